"""covering observation indexes for the KPI queries; drop the unused events (type, occurred_at) index

Revision ID: b7c1e2d4a9f3
Revises: f082d337b0e4
Create Date: 2026-11-23 04:00:00
"""
from __future__ import annotations

from alembic import op

revision = 'b7c1e2d4a9f3'
down_revision = 'f082d337b0e4'
branch_labels = None
depends_on = None

TIME = ['kpi', 'mode', 'at', 'end_at', 'place', 'category', 'num', 'den', 'value']
PLACE = ['kpi', 'mode', 'place', 'at', 'end_at', 'category', 'num', 'den', 'value']


def upgrade() -> None:
    with op.batch_alter_table('kpi_observations', schema=None) as batch_op:
        batch_op.drop_index('ix_kpi_observations_kpi_place')
        batch_op.drop_index('ix_kpi_observations_kpi_at')
        batch_op.create_index('ix_kpi_observations_time', TIME, unique=False)
        batch_op.create_index('ix_kpi_observations_place', PLACE, unique=False)
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_type_occurred')


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_type_occurred', ['type', 'occurred_at'], unique=False)
    with op.batch_alter_table('kpi_observations', schema=None) as batch_op:
        batch_op.drop_index('ix_kpi_observations_place')
        batch_op.drop_index('ix_kpi_observations_time')
        batch_op.create_index('ix_kpi_observations_kpi_at', ['kpi', 'at'], unique=False)
        batch_op.create_index('ix_kpi_observations_kpi_place', ['kpi', 'place'], unique=False)
