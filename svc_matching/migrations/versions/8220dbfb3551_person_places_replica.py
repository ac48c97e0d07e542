"""person places replica

person_places: svc_residents' persons reduced to grid and community (its place feed, ADR 0014), so the time
bank knows who exists and whose staff see their accounts.

Revision ID: 8220dbfb3551
Revises: 11188cd88594
Create Date: 2026-12-06 20:41:32.573752
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import common.db


revision = '8220dbfb3551'
down_revision = '11188cd88594'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('person_places',
    sa.Column('person_id', sa.String(length=36), nullable=False),
    sa.Column('grid_code', sa.String(length=24), nullable=True),
    sa.Column('community_code', sa.String(length=24), nullable=True),
    sa.Column('version', sa.Integer(), nullable=True),
    sa.Column('removed', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('updated_at', common.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('person_id', name=op.f('pk_person_places'))
    )


def downgrade() -> None:
    op.drop_table('person_places')
