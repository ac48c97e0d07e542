"""The built-in catalogue entries: the department emulators' query resources and the services' main resources.

Kept as data (not code paths); `ensure_catalogue` inserts the missing ones at start-up and leaves edited rows
alone. Field paths are dotted and apply to each element of list responses.

X-Road addressing: `/r1/{instance}/{xroad_member_class}/{owner}/{xroad_subsystem}/{xroad_service}/{rest}` is
forwarded to `{path_prefix}/{rest}`, e.g. `/r1/CN-ONENET/GOV/dept-minzheng/assistance/assistance-status/queries`
→ `/departments/minzheng/v1/queries`; each part in X-Road's identifier characters (`xroad_protocol.xroad_code`:
`svc_residents` is `svc.residents` there, docs/adr/0016).
"""
from __future__ import annotations

from common.exchange_fields import HOUSEHOLD_FIELDS, PERSON_FIELDS
from common.exchange_fields import field as f



_DEPT_COMMON = [f("department", "部门编码", "general"), f("department_name", "部门名称", "general"),
                f("id_number", "身份证号", "core", sensitive=True, mask="id_number")]

BUILTIN_RESOURCES: list[dict] = [
    {"code": "gongan.hukou", "owner": "dept-gongan", "name": "户籍登记核验",
     "description": "按身份证号核验户籍登记、户籍地区划与居住类型；送姓名时核验姓名与身份证号是否一致。"
                    "Household registration and identity check.",
     "sharing_class": "conditional", "service": "departments", "path_prefix": "/departments/gongan/v1/",
     "methods": ["POST"], "xroad_subsystem": "hukou", "xroad_service": "hukou-check",
     "fields": _DEPT_COMMON + [f("data.registered", "是否登记户籍", "important", personal=True),
                               f("data.hukou_division", "户籍地区划", "important", personal=True, mask="generic"),
                               f("data.residency_type", "居住类型", "general", personal=True),
                               f("data.identity_match", "姓名与身份证号是否一致", "important", personal=True),
                               f("data.identity_message", "身份核验说明", "general", personal=True,
                                 mask="generic")]},
    {"code": "minzheng.assistance", "owner": "dept-minzheng", "name": "低保特困状态",
     "description": "最低生活保障、特困供养与低收入家庭认定状态。Minimum-income and hardship status.",
     "sharing_class": "conditional", "service": "departments", "path_prefix": "/departments/minzheng/v1/",
     "methods": ["POST"], "xroad_subsystem": "assistance", "xroad_service": "assistance-status",
     "fields": _DEPT_COMMON + [f("data.dibao", "低保", "core", sensitive=True),
                               f("data.tekun", "特困", "core", sensitive=True),
                               f("data.low_income", "低收入家庭", "important", sensitive=True)]},
    {"code": "weijian.health-check", "owner": "dept-weijian", "name": "健康体检摘要",
     "description": "最近一次体检年份与慢病情况。Health-check summary.",
     "sharing_class": "conditional", "service": "departments", "path_prefix": "/departments/weijian/v1/",
     "methods": ["POST"], "xroad_subsystem": "health", "xroad_service": "health-summary",
     "fields": _DEPT_COMMON + [f("data.last_check_year", "最近体检年份", "important", sensitive=True),
                               f("data.chronic_conditions", "慢病情况", "core", sensitive=True)]},
    {"code": "renshe.insurance", "owner": "dept-renshe", "name": "社会保险参保状态",
     "description": "基本养老、医疗保险参保与领取养老金状态。Social insurance status.",
     "sharing_class": "unconditional", "service": "departments", "path_prefix": "/departments/renshe/v1/",
     "methods": ["POST"], "xroad_subsystem": "insurance", "xroad_service": "insurance-status",
     "fields": _DEPT_COMMON + [f("data.insured", "是否参保", "important", personal=True),
                               f("data.pension", "是否领取养老金", "general", personal=True)]},
    {"code": "canlian.certificate", "owner": "dept-canlian", "name": "残疾人证信息",
     "description": "残疾人证持证情况、残疾类别与等级。Disability certificate.",
     "sharing_class": "conditional", "service": "departments", "path_prefix": "/departments/canlian/v1/",
     "methods": ["POST"], "xroad_subsystem": "disability", "xroad_service": "disability-certificate",
     "fields": _DEPT_COMMON + [f("data.certificate", "是否持证", "core", sensitive=True),
                               f("data.category", "残疾类别", "important", sensitive=True),
                               f("data.grade", "残疾等级", "important", sensitive=True)]},
    {"code": "residents.persons", "owner": "svc_residents", "name": "居民基础信息",
     "description": "社区居民档案（一人一档）：姓名、身份证号、手机号、所在户与特殊群体标签。",
     "sharing_class": "conditional", "service": "residents", "path_prefix": "/residents/v1/persons",
     "methods": ["GET", "POST"], "xroad_subsystem": "residents", "xroad_service": "persons",
     # Every field of svc_residents' PersonOut, graded: what a person is (birth date, age, sex, residency) is
     # personal information; health, disability and assistance status (the special-group tags, accessibility
     # needs) is sensitive personal information (PIPL art. 28) and is removed outside a grant's scope.
     "fields": PERSON_FIELDS},
    {"code": "residents.households", "owner": "svc_residents", "name": "户档案",
     "description": "一户一档：地址、楼栋、网格、户主与成员。",
     "sharing_class": "conditional", "service": "residents", "path_prefix": "/residents/v1/households",
     "methods": ["GET"], "xroad_subsystem": "residents", "xroad_service": "households",
     "fields": HOUSEHOLD_FIELDS},
    {"code": "services.catalogue", "owner": "svc_services", "name": "服务事项清单",
     "description": "社区服务事项目录（事项、类别、办理时限、材料）。",
     "sharing_class": "unconditional", "service": "services", "path_prefix": "/services/v1/catalogue/items",
     "methods": ["GET"], "xroad_subsystem": "services", "xroad_service": "items",
     "fields": [f("code", "事项编码", "general"), f("name", "事项名称", "general")]},
    {"code": "services.requests", "owner": "svc_services", "name": "诉求工单",
     "description": "居民诉求与工单全程记录。",
     "sharing_class": "conditional", "service": "services", "path_prefix": "/services/v1/requests",
     "methods": ["GET"], "xroad_subsystem": "services", "xroad_service": "requests",
     "fields": [f("id", "工单编号", "general"), f("description", "诉求描述", "important", personal=True,
                                                 mask="generic")]},
    # A request's files, each kind its own resource: a department system downloads one
    # (`GET /services/v1/attachments/{id}/content`, the one path for both kinds) only under a live grant on that
    # kind and only for a request dispatched or escalated to it, checked by svc_services where the file is
    # (common/grants.py); the prefixes name the kind, not a route, so the forwarder does not gate the shared path.
    {"code": "services.materials", "owner": "svc_services", "name": "诉求证明材料文件",
     "description": "居民为诉求提交的证明材料文件（身份证复印件、证明等），逐次记入本人的访问记录。"
                    "Material files of requests; every read is in the person's access log.",
     "sharing_class": "conditional", "service": "services", "path_prefix": "/services/v1/attachments/materials",
     "methods": ["GET"], "xroad_subsystem": "services", "xroad_service": "materials",
     "fields": [f("content", "材料文件", "core", sensitive=True)]},
    {"code": "services.request_photos", "owner": "svc_services", "name": "诉求照片",
     "description": "诉求的现场照片与完工照片（已去除位置等元数据）。Photos of requests.",
     "sharing_class": "conditional", "service": "services", "path_prefix": "/services/v1/attachments/photos",
     "methods": ["GET"], "xroad_subsystem": "services", "xroad_service": "request-photos",
     "fields": [f("content", "照片文件", "important", personal=True)]},
    {"code": "matching.resources", "owner": "svc_matching", "name": "社区资源清单",
     "description": "供给主体、服务事项、联系方式等社区资源。",
     "sharing_class": "unconditional", "service": "matching", "path_prefix": "/matching/v1/resources",
     "methods": ["GET"], "xroad_subsystem": "matching", "xroad_service": "resources",
     "fields": [f("id", "资源编号", "general"), f("name", "资源名称", "general")]},
    {"code": "metrics.events", "owner": "svc_metrics", "name": "原始事件流",
     "description": "各服务上报的原始领域事件，仅供考核评估服务内部使用。",
     "sharing_class": "not_shared", "service": "metrics", "path_prefix": "/metrics/v1/events",
     "methods": ["GET"], "xroad_subsystem": "metrics", "xroad_service": "events", "fields": []},
]
