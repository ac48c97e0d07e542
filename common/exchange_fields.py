"""The declared fields of the catalogued resources whose owning service also applies the exchange's masking rule
itself (`common.masking.grant_view`): the one list the gateway's catalogue (`gateway/exchange/catalogue_data.py`)
and svc_residents read.

A field is `{path, label, grade, personal, sensitive, mask}`: `grade` general / important / core, `personal`
personal information (个人信息; every sensitive field is personal), `sensitive` sensitive personal information
(PIPL art. 28), `mask` how a masked value looks (`id_number`, `phone`, `name`, `generic`).
"""
from __future__ import annotations


def field(path: str, label: str, grade: str, *, personal: bool = False, sensitive: bool = False,
          mask: str | None = None) -> dict:
    return {"path": path, "label": label, "grade": grade, "personal": personal or sensitive,
            "sensitive": sensitive, "mask": mask}


f = field

# `residents.persons`: every field of svc_residents' PersonOut, graded: what a person is (birth date, age, sex,
# residency) is personal information; health, disability and assistance status (the special-group tags,
# accessibility needs) is sensitive personal information and is removed outside a grant's scope.
PERSON_FIELDS: list[dict] = [
    f("id", "居民编号", "general"), f("name", "姓名", "important", personal=True, mask="name"),
    f("id_number", "身份证号", "core", sensitive=True, mask="id_number"),
    f("phone", "手机号", "important", personal=True, mask="phone"),
    f("revealed", "是否明文", "general"),
    f("household_id", "所在户", "general", personal=True),
    f("birth_date", "出生日期", "important", personal=True, mask="generic"),
    f("age", "年龄", "important", personal=True),
    f("sex", "性别", "important", personal=True, mask="generic"),
    f("residency_type", "居住类型", "important", personal=True, mask="generic"),
    f("relation_to_head", "与户主关系", "important", personal=True, mask="generic"),
    f("preferred_channel", "联系渠道偏好", "general", personal=True, mask="generic"),
    f("accessibility_needs", "无障碍需求", "core", sensitive=True),
    f("grid_code", "网格", "general"), f("community_code", "社区", "general"),
    f("tags", "特殊群体标签", "core", sensitive=True),
    f("created_at", "建档时间", "general"), f("updated_at", "更新时间", "general"),
    f("version", "版本", "general"), f("merged_into", "已合并到", "general", personal=True),
]

# `residents.households`: a household's own fields (no members).
HOUSEHOLD_FIELDS: list[dict] = [
    f("id", "户编号", "general"), f("address", "地址", "important", personal=True, mask="generic"),
    f("grid_code", "网格", "general"), f("building_code", "楼栋", "general"),
    f("community_code", "社区", "general"),
    f("head_person_id", "户主", "general", personal=True),
    f("created_at", "建档时间", "general"), f("updated_at", "更新时间", "general"),
    f("version", "版本", "general"),
]
