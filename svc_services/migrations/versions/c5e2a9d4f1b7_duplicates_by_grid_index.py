"""index for possible duplicates by grid

Revision ID: c5e2a9d4f1b7
Revises: 4bfff20e8fd9
Create Date: 2026-11-29 09:20:00.000000
"""
from __future__ import annotations

from alembic import op

revision = 'c5e2a9d4f1b7'
down_revision = '4bfff20e8fd9'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_service_requests_item_grid_created', 'service_requests',
                    ['item_code', 'grid', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_service_requests_item_grid_created', table_name='service_requests')
