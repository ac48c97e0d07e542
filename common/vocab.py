"""The service categories of the 双清单 (resources and needs), one list for every service: svc_matching's taxonomy
(svc_matching/directory/vocab.py, whose migration inserts the same rows) and svc_metrics' needs questions of
surveys (svc_metrics/surveys) both read it here."""
from __future__ import annotations

# (code, zh, en)
CATEGORIES: list[tuple[str, str, str]] = [
    ("elderly_care", "养老服务", "Elderly care"), ("childcare", "托育服务", "Childcare"),
    ("life_service", "生活服务", "Daily-life services"), ("emergency", "应急服务", "Emergency"),
    ("government", "政务服务", "Government services"), ("grid_event", "网格事务", "Grid affairs"),
    ("counselling", "心理疏导", "Counselling"), ("employment", "就业指导", "Employment guidance"),
    ("health", "医疗健康", "Health"), ("disability", "助残服务", "Disability support"),
    ("education", "教育辅导", "Tutoring"), ("legal", "法律援助", "Legal aid"),
    ("culture", "文体活动", "Culture and sport"), ("housing", "住房保障", "Housing"),
    ("environment", "环境卫生", "Environment and sanitation"),
]
CATEGORY_CODES = frozenset(c for c, _, _ in CATEGORIES)
