"""built-in taxonomy terms

Revision ID: 8c1f0b7a2d34
Revises: 731a1b602707
Create Date: 2026-11-23 00:05:00
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

import common.db

revision = "8c1f0b7a2d34"
down_revision = "731a1b602707"
branch_labels = None
depends_on = None

# Built-in taxonomy: service categories and eligible special groups. Ids are UUIDv5 so every install agrees.
_NS = uuid.UUID("9b0a3c4e-2f57-4d0e-8c2a-4b6e1f3d5a70")
CATEGORIES = [
    ("elderly_care", "养老服务", "Elderly care"), ("childcare", "托育服务", "Childcare"),
    ("life_service", "生活服务", "Daily-life services"), ("emergency", "应急服务", "Emergency"),
    ("government", "政务服务", "Government services"), ("grid_event", "网格事务", "Grid affairs"),
    ("counselling", "心理疏导", "Counselling"), ("employment", "就业指导", "Employment guidance"),
    ("health", "医疗健康", "Health"), ("disability", "助残服务", "Disability support"),
    ("education", "教育辅导", "Tutoring"), ("legal", "法律援助", "Legal aid"),
    ("culture", "文体活动", "Culture and sport"), ("housing", "住房保障", "Housing"),
    ("environment", "环境卫生", "Environment and sanitation"),
]
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


def upgrade() -> None:
    table = sa.table("taxonomy_terms", sa.column("id", sa.String), sa.column("taxonomy", sa.String),
                     sa.column("code", sa.String), sa.column("name", sa.String), sa.column("name_en", sa.String),
                     sa.column("created_at", common.db.UTCDateTime()))
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = [{"id": term_id(t, c), "taxonomy": t, "code": c, "name": zh, "name_en": en, "created_at": now}
            for t, terms in (("category", CATEGORIES), ("eligibility", ELIGIBILITY)) for c, zh, en in terms]
    op.bulk_insert(table, rows)


def downgrade() -> None:
    ids = [term_id(t, c) for t, terms in (("category", CATEGORIES), ("eligibility", ELIGIBILITY)) for c, _, _ in terms]
    op.execute(sa.text("DELETE FROM taxonomy_terms WHERE id IN :ids").bindparams(sa.bindparam("ids", expanding=True))
               .params(ids=ids))
