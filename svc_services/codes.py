"""Code lists of svc_services (kept as data so the API, seed and Open311 agree), each code with zh and en labels."""
from __future__ import annotations

from typing import Literal

CATEGORIES: dict[str, tuple[str, str]] = {
    "government": ("政务服务", "Government services"),
    "social_security": ("社保办理", "Social security"),
    "certificates": ("证件申领", "Certificates"),
    "life_service": ("生活服务", "Daily-life services"),
    "emergency": ("应急服务", "Emergency"),
    "elderly_care": ("养老服务", "Elderly care"),
    "childcare": ("托育服务", "Childcare"),
    "employment": ("就业指导", "Employment"),
    "counselling": ("心理疏导", "Counselling"),
    "health": ("医疗健康", "Health"),
    "disability": ("助残服务", "Disability support"),
    "housing": ("住房保障", "Housing"),
    "grid_event": ("网格事件", "Grid events"),
    "dispute": ("矛盾调解", "Dispute mediation"),
    "city_management": ("城市管理", "City management"),
    "other": ("其他", "Other"),
}
Category = Literal["government", "social_security", "certificates", "life_service", "emergency", "elderly_care",
                   "childcare", "employment", "counselling", "health", "disability", "housing", "grid_event",
                   "dispute", "city_management", "other"]

TIERS: dict[str, tuple[str, str]] = {
    "basic": ("基础保障", "Basic"),
    "featured": ("特色提升", "Featured"),
    "personalised": ("个性化定制", "Personalised"),
}
Tier = Literal["basic", "featured", "personalised"]

CHANNELS: dict[str, tuple[str, str]] = {
    "app": ("手机应用", "Mobile app"),
    "kiosk": ("自助服务一体机", "Kiosk"),
    "counter": ("窗口", "Counter"),
    "phone": ("电话", "Phone"),
    "grid_patrol": ("网格巡查", "Grid patrol"),
    "iot": ("物联感知", "IoT sensor"),
    "api": ("系统接口", "API"),
}
Channel = Literal["app", "kiosk", "counter", "phone", "grid_patrol", "iot", "api"]
ALL_CHANNELS: tuple[str, ...] = tuple(CHANNELS)
# Channels counted as online handling (线上办理率).
ONLINE_CHANNELS = ("app", "kiosk", "api")

PRIORITIES: dict[str, tuple[str, str]] = {
    "emergency": ("紧急", "Emergency"),
    "urgent": ("加急", "Urgent"),
    "normal": ("一般", "Normal"),
}
Priority = Literal["emergency", "urgent", "normal"]

ASSIGNEE_KINDS = ("grid_worker", "department", "provider")
AssigneeKind = Literal["grid_worker", "department", "provider"]

# Escalation ladder 小事网格办、大事社区议；街道吹哨、部门报到.
ESCALATION_LEVELS = ("grid", "community", "street", "department")
LEVEL_ZH = {"grid": "网格", "community": "社区", "street": "街道", "department": "部门"}

# Open311 attribute datatypes.
AttributeType = Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
MaterialSource = Literal["upload", "exchange"]
