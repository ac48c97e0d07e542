"""request appointments (svc_matching's appointment feed) and the catalogue's appointment_required flag

Revision ID: 9b6a222878ba
Revises: 887d8a967a54
Create Date: 2026-12-07 07:24:33.550653
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import common.db


revision = '9b6a222878ba'
down_revision = '887d8a967a54'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('request_appointments',
    sa.Column('booking_id', sa.String(length=36), nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('resource_id', sa.String(length=36), nullable=False),
    sa.Column('resource_name', sa.String(length=200), nullable=False),
    sa.Column('place_code', sa.String(length=24), nullable=False),
    sa.Column('starts_at', common.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', common.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_seq', sa.Integer(), nullable=False),
    sa.Column('updated_at', common.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['service_requests.id'], name=op.f('fk_request_appointments_request_id_service_requests')),
    sa.PrimaryKeyConstraint('booking_id', name=op.f('pk_request_appointments'))
    )
    with op.batch_alter_table('request_appointments', schema=None) as batch_op:
        batch_op.create_index('ix_request_appointments_request', ['request_id', 'updated_at'], unique=False)

    with op.batch_alter_table('catalogue_item_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('appointment_required', sa.Boolean(), server_default=sa.false(), nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('catalogue_item_versions', schema=None) as batch_op:
        batch_op.drop_column('appointment_required')

    with op.batch_alter_table('request_appointments', schema=None) as batch_op:
        batch_op.drop_index('ix_request_appointments_request')

    op.drop_table('request_appointments')
