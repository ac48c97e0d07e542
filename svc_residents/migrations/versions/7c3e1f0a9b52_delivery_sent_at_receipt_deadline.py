"""delivery sent_at: the receipt deadline

notification_deliveries.sent_at: when the current channel's platform took the message, the start of its
receipt's deadline (notifications/dispatch.py, Policy.receipt_deadline). Deliveries waiting for a receipt when this
revision runs take their last update as that time.

Revision ID: 7c3e1f0a9b52
Revises: 5e1c7a9d2b40
Create Date: 2026-12-07 18:40:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

import common.db

revision = '7c3e1f0a9b52'
down_revision = '5e1c7a9d2b40'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('notification_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sent_at', common.db.UTCDateTime(timezone=True), nullable=True))
    op.execute("UPDATE notification_deliveries SET sent_at = updated_at WHERE state IN ('sent', 'checking')")


def downgrade() -> None:
    with op.batch_alter_table('notification_deliveries', schema=None) as batch_op:
        batch_op.drop_column('sent_at')
