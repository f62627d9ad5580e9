"""events, sign-ups, waitlist, check-in

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 05:00:00
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

import backend.platform.db  # noqa: F401

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('event',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('org_unit_id', sa.Integer(), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=True),
    sa.Column('title', sa.String(length=64), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('place', sa.String(length=255), nullable=False),
    sa.Column('status', sa.Enum('draft', 'published', 'cancelled', name='eventstatus', native_enum=False, length=16), nullable=False),
    sa.Column('starts_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('ends_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('signup_opens_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('signup_closes_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('cancel_cutoff_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('checkin_opens_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('checkin_closes_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('seats_taken', sa.Integer(), nullable=False),
    sa.Column('max_party_size', sa.Integer(), nullable=False),
    sa.Column('waitlist_limit', sa.Integer(), nullable=True),
    sa.Column('waitlist_count', sa.Integer(), nullable=False),
    sa.Column('waitlist_seq', sa.Integer(), nullable=False),
    sa.Column('eligible_tiers', sa.JSON(), nullable=False),
    sa.Column('segment_id', sa.Integer(), nullable=True),
    sa.Column('fee_kind', sa.Enum('free', 'points', 'cash', name='feekind', native_enum=False, length=8), nullable=False),
    sa.Column('fee_points', sa.Integer(), nullable=False),
    sa.Column('fee_fen', sa.Integer(), nullable=False),
    sa.Column('attendance_points', sa.Integer(), nullable=False),
    sa.Column('created_by_staff_id', sa.Integer(), nullable=True),
    sa.Column('published_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('cancelled_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('cancel_reason', sa.String(length=255), nullable=True),
    sa.Column('reminded_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('no_shows_marked_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('created_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('updated_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_staff_id'], ['staff.id'], name=op.f('fk_event_created_by_staff_id_staff')),
    sa.ForeignKeyConstraint(['org_unit_id'], ['org_unit.id'], name=op.f('fk_event_org_unit_id_org_unit')),
    sa.ForeignKeyConstraint(['store_id'], ['org_unit.id'], name=op.f('fk_event_store_id_org_unit')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    op.create_index('ix_event_org_unit', 'event', ['org_unit_id', 'status'], unique=False)
    op.create_index('ix_event_status_starts', 'event', ['status', 'starts_at'], unique=False)
    op.create_table('event_checkin_scan',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('registration_id', sa.Integer(), nullable=True),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=True),
    sa.Column('result', sa.String(length=48), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('created_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['event.id'], name=op.f('fk_event_checkin_scan_event_id_event')),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_event_checkin_scan_staff_id_staff')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_checkin_scan')),
    sa.UniqueConstraint('event_id', 'nonce', name=op.f('uq_event_checkin_scan_event_id_nonce')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    op.create_index(op.f('ix_event_checkin_scan_token_hash'), 'event_checkin_scan', ['token_hash'], unique=False)
    op.create_table('event_registration',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('active_customer_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.Enum('pending_payment', 'confirmed', 'waitlisted', 'offered', 'cancelled', 'expired', 'checked_in', 'no_show', name='registrationstate', native_enum=False, length=16), nullable=False),
    sa.Column('party_size', sa.Integer(), nullable=False),
    sa.Column('waitlist_seq', sa.Integer(), nullable=True),
    sa.Column('offer_expires_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('hold_expires_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('fee_points', sa.Integer(), nullable=False),
    sa.Column('fee_fen', sa.Integer(), nullable=False),
    sa.Column('points_ledger_id', sa.Integer(), nullable=True),
    sa.Column('payment_order_id', sa.Integer(), nullable=True),
    sa.Column('confirmed_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('cancelled_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('cancelled_by', sa.String(length=16), nullable=True),
    sa.Column('checked_in_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('checked_in_by', sa.Integer(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('updated_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['checked_in_by'], ['staff.id'], name=op.f('fk_event_registration_checked_in_by_staff')),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_event_registration_customer_id_customer')),
    sa.ForeignKeyConstraint(['event_id'], ['event.id'], name=op.f('fk_event_registration_event_id_event')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_registration')),
    sa.UniqueConstraint('event_id', 'active_customer_id', name=op.f('uq_event_registration_event_id_active_customer_id')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    op.create_index('ix_event_registration_customer', 'event_registration', ['customer_id', 'id'], unique=False)
    op.create_index('ix_event_registration_event_state', 'event_registration', ['event_id', 'state', 'waitlist_seq'], unique=False)
    op.create_index('ix_event_registration_hold', 'event_registration', ['state', 'hold_expires_at'], unique=False)
    op.create_index('ix_event_registration_offer', 'event_registration', ['state', 'offer_expires_at'], unique=False)


def downgrade() -> None:
    op.drop_table('event_registration')
    op.drop_table('event_checkin_scan')
    op.drop_table('event')
