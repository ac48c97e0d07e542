"""Code lists of svc_residents (kept as data so the API, seed and import agree), each code with zh and en labels."""
from __future__ import annotations

from typing import Literal

# Special groups 特殊群体 (DOMAIN.md).
TAGS: dict[str, tuple[str, str]] = {
    "elderly": ("老年人（60岁及以上）", "Elderly (60+)"),
    "living_alone": ("独居老人", "Elderly living alone"),
    "very_old": ("高龄老人", "Very old"),
    "disabled": ("残疾人（持证）", "Disabled (certified)"),
    "dibao": ("低保", "Minimum-income (dibao)"),
    "low_income": ("低收入家庭", "Low-income household"),
    "tekun": ("特困人员", "Extreme hardship (tekun)"),
    "left_behind_child": ("留守/流动儿童", "Left-behind or migrant child"),
    "infant": ("婴幼儿（3岁以下）", "Infant (under 3)"),
    "dual_earner": ("双职工家庭", "Dual-earner family"),
}
TagCode = Literal["elderly", "living_alone", "very_old", "disabled", "dibao", "low_income", "tekun",
                  "left_behind_child", "infant", "dual_earner"]
# Tags whose status is sensitive personal information (PIPL): shown only to callers who may read the person.
TagSource = Literal["self", "staff", "department"]

RESIDENCY: dict[str, tuple[str, str]] = {
    "registered": ("户籍人口", "Registered (hukou)"),
    "resident": ("常住人口", "Permanent resident"),
    "floating": ("流动人口", "Floating population"),
}
ResidencyType = Literal["registered", "resident", "floating"]
# The ledger words residents and staff use, accepted on input and by the importer.
RESIDENCY_ZH = {"户籍": "registered", "户籍人口": "registered", "常住": "resident", "常住人口": "resident",
                "流动": "floating", "流动人口": "floating"}

Channel = Literal["app", "kiosk", "counter", "phone", "sms", "visit"]
AccessibilityNeed = Literal["large_font", "voice", "needs_proxy", "sign_language", "home_visit"]
ConsentPurpose = Literal["data_sharing", "contact", "service_matching", "research"]
ConsentChannel = Literal["app", "kiosk", "counter", "phone", "paper", "visit"]
