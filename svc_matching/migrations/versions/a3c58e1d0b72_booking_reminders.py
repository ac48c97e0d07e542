"""booking and sign-up reminders: the reminder's claim (reminded_at)

Revision ID: a3c58e1d0b72
Revises: e79fc4116d53
Create Date: 2026-12-07 08:40:00.000000
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import common.db


revision = 'a3c58e1d0b72'
down_revision = 'e79fc4116d53'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('bookings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reminded_at', common.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table('activity_signups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reminded_at', common.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('activity_signups', schema=None) as batch_op:
        batch_op.drop_column('reminded_at')
    with op.batch_alter_table('bookings', schema=None) as batch_op:
        batch_op.drop_column('reminded_at')
