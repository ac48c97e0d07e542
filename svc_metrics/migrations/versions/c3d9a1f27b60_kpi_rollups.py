"""month rollups of the observations (kpi_rollups); key in the covering observation indexes; end-time index

Revision ID: c3d9a1f27b60
Revises: b7c1e2d4a9f3
Create Date: 2026-11-29 09:00:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

revision = 'c3d9a1f27b60'
down_revision = 'b7c1e2d4a9f3'
branch_labels = None
depends_on = None

OLD_TIME = ['kpi', 'mode', 'at', 'end_at', 'place', 'category', 'num', 'den', 'value']
OLD_PLACE = ['kpi', 'mode', 'place', 'at', 'end_at', 'category', 'num', 'den', 'value']


def upgrade() -> None:
    op.create_table(
        'kpi_rollups',
        sa.Column('kpi', sa.String(length=48), nullable=False),
        sa.Column('mode', sa.String(length=8), nullable=False),
        sa.Column('dim', sa.String(length=8), nullable=False),
        sa.Column('dimval', sa.String(length=48), nullable=False),
        sa.Column('bucket', sa.Integer(), nullable=False),
        sa.Column('place', sa.String(length=32), nullable=False),
        sa.Column('category', sa.String(length=48), nullable=False),
        sa.Column('num', sa.Float(), nullable=False),
        sa.Column('den', sa.Float(), nullable=False),
        sa.Column('n', sa.BigInteger(), nullable=False),
        sa.Column('vsum', sa.BigInteger(), nullable=False),
        sa.Column('vn', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('kpi', 'mode', 'dim', 'dimval', 'bucket', 'place', 'category',
                                name=op.f('pk_kpi_rollups')),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table('kpi_observations', schema=None) as batch_op:
        batch_op.drop_index('ix_kpi_observations_place')
        batch_op.drop_index('ix_kpi_observations_time')
        batch_op.create_index('ix_kpi_observations_time', [*OLD_TIME, 'key'], unique=False)
        batch_op.create_index('ix_kpi_observations_place', [*OLD_PLACE, 'key'], unique=False)
        batch_op.create_index('ix_kpi_observations_end', ['kpi', 'end_at', 'place', 'category', 'num', 'den'],
                              unique=False, sqlite_where=sa.text('end_at IS NOT NULL'),
                              postgresql_where=sa.text('end_at IS NOT NULL'))
    # Existing observations (a database from before this revision) are rolled up by the rebuild
    # (`onenet metrics rebuild` or POST /metrics/v1/rebuild); a fresh database starts empty.


def downgrade() -> None:
    with op.batch_alter_table('kpi_observations', schema=None) as batch_op:
        batch_op.drop_index('ix_kpi_observations_end')
        batch_op.drop_index('ix_kpi_observations_place')
        batch_op.drop_index('ix_kpi_observations_time')
        batch_op.create_index('ix_kpi_observations_time', OLD_TIME, unique=False)
        batch_op.create_index('ix_kpi_observations_place', OLD_PLACE, unique=False)
    op.drop_table('kpi_rollups')
