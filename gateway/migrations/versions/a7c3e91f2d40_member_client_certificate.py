"""member client certificate fingerprint (optional mutual-TLS identity)

Revision ID: a7c3e91f2d40
Revises: de475b738c2c
Create Date: 2026-11-29 09:00:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = 'a7c3e91f2d40'
down_revision = 'de475b738c2c'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('members') as batch_op:
        batch_op.add_column(sa.Column('client_cert_sha256', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('members') as batch_op:
        batch_op.drop_column('client_cert_sha256')
