"""elector feed

persons.elector_version / elector_digest: the elector feed to svc_services' deliberation
(persons/elector_feed.py). Persons registered before this revision have no digest yet: `onenet residents
feed-electors` sends them.

Revision ID: 5e1c7a9d2b40
Revises: a2ed51d8e258
Create Date: 2026-12-07 12:10:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '5e1c7a9d2b40'
down_revision = 'a2ed51d8e258'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.add_column(sa.Column('elector_version', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('elector_digest', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.drop_column('elector_digest')
        batch_op.drop_column('elector_version')
