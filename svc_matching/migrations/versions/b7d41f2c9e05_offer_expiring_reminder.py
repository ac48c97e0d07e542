"""offers: the expiry reminder's claim (expiring_notified_at)

Revision ID: b7d41f2c9e05
Revises: a3c58e1d0b72
Create Date: 2026-12-07 12:20:00.000000
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import common.db


revision = 'b7d41f2c9e05'
down_revision = 'a3c58e1d0b72'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expiring_notified_at', common.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.drop_column('expiring_notified_at')
