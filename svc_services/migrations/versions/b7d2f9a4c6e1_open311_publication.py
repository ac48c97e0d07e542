"""Open311 publication: personal catalogue items, staff-approved public descriptions

Revision ID: b7d2f9a4c6e1
Revises: a1c4e7f2b9d3
Create Date: 2026-12-01 00:00:01
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import common.db


revision = 'b7d2f9a4c6e1'
down_revision = 'a1c4e7f2b9d3'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # every existing version counts as personal until its owner says otherwise: nothing typed is published unasked
    with op.batch_alter_table('catalogue_item_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('personal', sa.Boolean(), server_default=sa.true(), nullable=False))
    op.create_table(
        'request_publications',
        sa.Column('request_id', sa.String(length=36), nullable=False),
        sa.Column('description', sa.Text(), nullable=True),
        sa.Column('approved_by', sa.String(length=160), nullable=False),
        sa.Column('approved_role', sa.String(length=32), nullable=False),
        sa.Column('approved_at', common.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['request_id'], ['service_requests.id'],
                                name=op.f('fk_request_publications_request_id_service_requests')),
        sa.PrimaryKeyConstraint('request_id', name=op.f('pk_request_publications')),
    )


def downgrade() -> None:
    op.drop_table('request_publications')
    with op.batch_alter_table('catalogue_item_versions', schema=None) as batch_op:
        batch_op.drop_column('personal')
