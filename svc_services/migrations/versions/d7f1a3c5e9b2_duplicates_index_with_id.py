"""possible duplicates: index (item_code, grid, created_at, id); drop the item_code-only index

The duplicates query (open requests of one item in one grid, newest first, ties by id) is now served in index
order and stops at its LIMIT. PostgreSQL's generic plan for the prepared statement had picked the item_code-only
index instead and read every request of the item on each intake batch (4.9 million index tuples in 10 s of the
intake benchmark). The item_code-only index is the composite's leading column, so nothing else needs it.

Revision ID: d7f1a3c5e9b2
Revises: 21d019fb4d72
Create Date: 2026-11-29 18:50:00.000000
"""
from __future__ import annotations

from alembic import op

revision = 'd7f1a3c5e9b2'
down_revision = '21d019fb4d72'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_service_requests_item_grid_created_id', 'service_requests',
                    ['item_code', 'grid', 'created_at', 'id'], unique=False)
    op.drop_index('ix_service_requests_item_grid_created', table_name='service_requests')
    op.drop_index('ix_service_requests_item_code', table_name='service_requests')


def downgrade() -> None:
    op.create_index('ix_service_requests_item_code', 'service_requests', ['item_code'], unique=False)
    op.create_index('ix_service_requests_item_grid_created', 'service_requests',
                    ['item_code', 'grid', 'created_at'], unique=False)
    op.drop_index('ix_service_requests_item_grid_created_id', table_name='service_requests')
