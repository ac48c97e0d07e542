from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from common.errors import Problem
from common.validators import JSON_INTEGER, CommunityCode, GridCode
from svc_residents.codes import (AccessibilityNeed, Channel, ConsentChannel, ConsentPurpose, ResidencyType, TagCode,
                                 TagSource)


class TagIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: TagCode
    source: TagSource = Field(description="self 本人申报 / staff 工作人员录入 / department 部门核验")
    source_department: str | None = Field(default=None, max_length=32, examples=["minzheng"])
    verified: bool = False
    verified_at: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    note: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _consistent(self) -> "TagIn":
        if self.verified_at is not None and not self.verified:
            raise _field_problem("verified_at", "tag.verified_at_unverified", "未核验的标签不能填写核验时间",
                                 "verified_at needs verified=true")
        if self.valid_until is not None and self.verified_at is not None and self.valid_until < self.verified_at:
            raise _field_problem("valid_until", "tag.valid_until_before_verified", "有效期截止时间早于核验时间",
                                 "valid_until is before verified_at")
        if self.source == "department" and not self.source_department:
            raise _field_problem("source_department", "tag.department_required", "部门来源的标签须注明部门",
                                 "A department-sourced tag names its department")
        return self


def _field_problem(field: str, code: str, zh: str, en: str) -> Problem:
    from common.errors import invalid

    return invalid(field, code, zh, en)


class TagOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    label: str
    source: str
    source_department: str | None
    verified: bool
    verified_at: datetime | None
    valid_until: datetime | None
    active: bool
    note: str | None
    recorded_by: str
    updated_at: datetime


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purpose: ConsentPurpose = Field(description="data_sharing 数据共享 / contact 联系 / service_matching 服务匹配 / research 调研")
    granted: bool
    channel: ConsentChannel = Field(description="取得同意的渠道")
    note: str | None = Field(default=None, max_length=200)


class ConsentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    purpose: str
    granted: bool
    channel: str
    recorded_at: datetime
    recorded_by: str
    recorded_role: str
    note: str | None


class PersonCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    household_id: str = Field(max_length=36)
    name: str = Field(min_length=1, max_length=50, examples=["张伟"])
    id_number: str = Field(min_length=1, max_length=32, description="居民身份证号（18 位，GB 11643 校验）",
                           examples=["110105198003120112"])
    phone: str | None = Field(default=None, max_length=20, description="手机号（11 位）", examples=["13800010001"])
    residency_type: ResidencyType = Field(description="registered 户籍 / resident 常住 / floating 流动人口")
    relation_to_head: str | None = Field(default=None, max_length=20, examples=["配偶"])
    is_head: bool = Field(default=False, description="设为户主")
    preferred_channel: Channel | None = None
    accessibility_needs: list[AccessibilityNeed] = Field(default_factory=list, max_length=5)
    tags: list[TagIn] = Field(default_factory=list, max_length=10)


class PersonUpdate(BaseModel):
    """Residents and proxies may change only phone, preferred channel and accessibility needs."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="当前版本号；不一致时返回 409")
    name: str | None = Field(default=None, min_length=1, max_length=50)
    phone: str | None = Field(default=None, max_length=20)
    residency_type: ResidencyType | None = None
    relation_to_head: str | None = Field(default=None, max_length=20)
    household_id: str | None = Field(default=None, max_length=36, description="迁入另一户")
    preferred_channel: Channel | None = None
    accessibility_needs: list[AccessibilityNeed] | None = Field(default=None, max_length=5)


SELF_FIELDS = {"version", "phone", "preferred_channel", "accessibility_needs"}


class PersonOut(BaseModel):
    id: str
    household_id: str
    name: str
    id_number: str = Field(description="默认脱敏（110101********1234）；reveal=true 且有权限时为明文")
    phone: str | None = Field(description="默认脱敏（138****5678）")
    revealed: bool = Field(description="id_number / phone 是否为明文")
    birth_date: date
    age: int
    sex: str = Field(description="M 男 / F 女（由身份证号推导）")
    residency_type: str
    relation_to_head: str | None
    preferred_channel: str | None
    accessibility_needs: list[str]
    grid_code: str
    community_code: str
    tags: list[TagOut]
    created_at: datetime
    updated_at: datetime
    version: int
    merged_into: str | None = Field(default=None, description="已合并到的档案（重复档案合并后保留为记录）")


class PersonSearch(BaseModel):
    """Search filters; the ID number and phone go in a body, never a URL, so they stay out of access logs."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=50, description="姓名（部分匹配）")
    id_number: str | None = Field(default=None, max_length=32, description="身份证号（精确匹配，经盲索引）")
    phone: str | None = Field(default=None, max_length=20, description="手机号（精确匹配，经盲索引）")
    grid_code: GridCode | None = None
    community_code: CommunityCode | None = None
    household_id: str | None = Field(default=None, max_length=36)
    tag: TagCode | None = Field(default=None, description="特殊群体标签（仅计有效期内的）")
    age_min: Annotated[int, Field(ge=0, le=150), JSON_INTEGER] | None = None  # as JSON Schema's integer: not "5"
    age_max: Annotated[int, Field(ge=0, le=150), JSON_INTEGER] | None = None
    limit: Annotated[int, Field(ge=1, le=200), JSON_INTEGER] = 50
    cursor: str | None = None
