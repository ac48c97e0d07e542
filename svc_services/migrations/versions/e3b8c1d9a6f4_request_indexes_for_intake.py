"""service requests: drop the indexes that every submission wrote and no query needed; overdue and assignee partial

Every submission inserts into every index of service_requests. Measured on the intake benchmark, five of the ten
cost about a fifth of the time to insert a batch and served nothing a query needs:
- state alone: the leading column of ix_service_requests_open_due (state, resolution_due_at);
- channel and priority alone: three to six values each; a list filtered by one reads the primary key newest
  first and stops at its limit, where the index gave rows in rowid order to be sorted;
- overdue and assignee_id: now partial, holding only the overdue and the assigned requests (a new request is
  neither), which are what a list or an assignee check looks for.

Revision ID: e3b8c1d9a6f4
Revises: d7f1a3c5e9b2
Create Date: 2026-11-30 01:40:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'e3b8c1d9a6f4'
down_revision = 'd7f1a3c5e9b2'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for name in ('state', 'channel', 'priority', 'overdue', 'assignee_id'):
        op.drop_index(f'ix_service_requests_{name}', table_name='service_requests')
    op.create_index('ix_service_requests_overdue', 'service_requests', ['overdue'], unique=False,
                    sqlite_where=sa.text('overdue = 1'), postgresql_where=sa.text('overdue'))
    op.create_index('ix_service_requests_assignee_id', 'service_requests', ['assignee_id'], unique=False,
                    sqlite_where=sa.text('assignee_id IS NOT NULL'),
                    postgresql_where=sa.text('assignee_id IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_service_requests_assignee_id', table_name='service_requests')
    op.drop_index('ix_service_requests_overdue', table_name='service_requests')
    for name in ('state', 'channel', 'priority', 'overdue', 'assignee_id'):
        op.create_index(f'ix_service_requests_{name}', 'service_requests', [name], unique=False)
