"""deliberation votes: an exact two-thirds participation quorum (quorum_rule), quorum_percent only for percent ones

《民法典》第二百七十八条 asks two thirds of the owners to take part; an integer percent cannot state it (67 % asks 5 of
6 where two thirds is 4). Votes stored so far keep their percent quorum (quorum_rule 'percent'). The passing rule
gains three_quarters; `rule` is a plain string column, so no constraint changes.

Revision ID: a8d3f6b2c4e7
Revises: 6b174d34d98c
Create Date: 2026-12-08 09:00:00.000000
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = 'a8d3f6b2c4e7'
down_revision = '6b174d34d98c'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliberation_votes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quorum_rule', sa.String(length=16), server_default='percent', nullable=False))
        batch_op.alter_column('quorum_percent', existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    # 67 %, the nearest percent not below two thirds
    op.execute("UPDATE deliberation_votes SET quorum_percent = 67 WHERE quorum_percent IS NULL")
    with op.batch_alter_table('deliberation_votes', schema=None) as batch_op:
        batch_op.alter_column('quorum_percent', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column('quorum_rule')
