"""The built-in taxonomy (categories and eligible groups); the migration inserts the same rows."""
from __future__ import annotations

import uuid

from common.vocab import CATEGORIES as _CATEGORIES

# Built-in taxonomy: service categories and eligible special groups. Ids are UUIDv5 so every install agrees.
_NS = uuid.UUID("9b0a3c4e-2f57-4d0e-8c2a-4b6e1f3d5a70")
CATEGORIES = _CATEGORIES  # one list, in common/ (svc_metrics' survey needs questions read it too)
ELIGIBILITY = [
    ("elderly", "老年人（60岁以上）", "Elderly (60+)"), ("living_alone", "独居老人", "Living alone"),
    ("very_old", "高龄老人", "Very old"), ("disabled", "残疾人（持证）", "Disabled (certified)"),
    ("dibao", "最低生活保障对象", "Minimum-income (dibao)"), ("low_income", "低收入家庭", "Low-income household"),
    ("tekun", "特困人员", "Extreme hardship"), ("left_behind_child", "留守儿童", "Left-behind child"),
    ("migrant_child", "流动儿童", "Migrant child"), ("infant", "婴幼儿（3岁以下）", "Infant (under 3)"),
    ("dual_earner", "双职工家庭", "Dual-earner family"),
]


def term_id(taxonomy: str, code: str) -> str:
    return str(uuid.uuid5(_NS, f"taxonomy:{taxonomy}:{code}"))
