"""rectification cases (整改) as records with a lifecycle

Revision ID: d5e8b2c4f1a7
Revises: c3d9a1f27b60
Create Date: 2026-11-29 09:30:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import common.db

revision = 'd5e8b2c4f1a7'
down_revision = 'c3d9a1f27b60'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'rectification_cases',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('warning_id', sa.String(length=36), nullable=False),
        sa.Column('scope', sa.String(length=32), nullable=False),
        sa.Column('period', sa.String(length=16), nullable=False),
        sa.Column('reason_zh', sa.String(length=300), nullable=False),
        sa.Column('reason_en', sa.String(length=300), nullable=False),
        sa.Column('evidence', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('opened_at', common.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('opened_by', sa.String(length=160), nullable=False),
        sa.Column('started_at', common.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('started_by', sa.String(length=160), nullable=True),
        sa.Column('closed_at', common.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('closed_by', sa.String(length=160), nullable=True),
        sa.Column('close_note', sa.String(length=2000), nullable=True),
        sa.Column('history', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['warning_id'], ['warnings.id'],
                                name=op.f('fk_rectification_cases_warning_id_warnings')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_rectification_cases')),
        sa.UniqueConstraint('warning_id', name=op.f('uq_rectification_cases_warning_id')),
    )
    with op.batch_alter_table('rectification_cases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rectification_cases_scope'), ['scope'], unique=False)
    # Warnings that were flagged for rectification before this revision become opened cases.
    op.execute(
        "INSERT INTO rectification_cases (id, warning_id, scope, period, reason_zh, reason_en, evidence, status, "
        "opened_at, opened_by, history) SELECT 'rc-' || id, id, scope, period, title_zh, title_en, evidence, "
        "'opened', created_at, 'system', '[]' FROM warnings WHERE rectification")


def downgrade() -> None:
    with op.batch_alter_table('rectification_cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rectification_cases_scope'))
    op.drop_table('rectification_cases')
