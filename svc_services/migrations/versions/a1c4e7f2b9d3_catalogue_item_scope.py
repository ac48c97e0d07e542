"""catalogue item scope: the area an item is offered in and owned at

Revision ID: a1c4e7f2b9d3
Revises: f4a9d2c7b1e3
Create Date: 2026-12-01 00:00:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = 'a1c4e7f2b9d3'
down_revision = 'f4a9d2c7b1e3'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # existing items stay in the district-wide catalogue (NULL)
    with op.batch_alter_table('catalogue_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scope', sa.String(length=24), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('catalogue_items', schema=None) as batch_op:
        batch_op.drop_column('scope')
