"""coupon templates, coupons, write-offs

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 05:00:00
"""

import sqlalchemy as sa
from alembic import op

import backend.platform.db

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('coupon_claim_counter',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('template_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('claimed', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupon_claim_counter')),
    sa.UniqueConstraint('template_id', 'customer_id', name=op.f('uq_coupon_claim_counter_template_id_customer_id')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    op.create_table('coupon_template',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.Enum('fixed', 'threshold', 'percent', 'voucher', 'gift', name='couponkind', native_enum=False, length=16), nullable=False),
    sa.Column('value_fen', sa.Integer(), nullable=False),
    sa.Column('threshold_fen', sa.Integer(), nullable=False),
    sa.Column('percent_off', sa.Integer(), nullable=False),
    sa.Column('cap_fen', sa.Integer(), nullable=False),
    sa.Column('service_type', sa.String(length=32), nullable=True),
    sa.Column('gift_name', sa.String(length=64), nullable=True),
    sa.Column('store_id', sa.Integer(), nullable=True),
    sa.Column('stock', sa.Integer(), nullable=False),
    sa.Column('issued', sa.Integer(), nullable=False),
    sa.Column('per_member_limit', sa.Integer(), nullable=False),
    sa.Column('claim_starts_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('claim_ends_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('use_starts_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('use_ends_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('use_days', sa.Integer(), nullable=True),
    sa.Column('business_types', sa.JSON(), nullable=True),
    sa.Column('item_ids', sa.JSON(), nullable=True),
    sa.Column('brands', sa.JSON(), nullable=True),
    sa.Column('eligible_tiers', sa.JSON(), nullable=True),
    sa.Column('segment_id', sa.Integer(), nullable=True),
    sa.Column('car_brand', sa.String(length=32), nullable=True),
    sa.Column('new_members_only', sa.Boolean(), nullable=False),
    sa.Column('exclusive', sa.Boolean(), nullable=False),
    sa.Column('combinable_kinds', sa.JSON(), nullable=True),
    sa.Column('max_per_order', sa.Integer(), nullable=False),
    sa.Column('exchange_code', sa.String(length=32), nullable=True),
    sa.Column('auto_issue_on', sa.Enum('registration', 'car_bound', 'first_paid_order', 'birthday', 'tier_upgrade', name='autoissue', native_enum=False, length=24), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['store_id'], ['org_unit.id'], name=op.f('fk_coupon_template_store_id_org_unit')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupon_template')),
    sa.UniqueConstraint('exchange_code', name=op.f('uq_coupon_template_exchange_code')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    op.create_index(op.f('ix_coupon_template_auto_issue_on'), 'coupon_template', ['auto_issue_on'], unique=False)
    op.create_index(op.f('ix_coupon_template_store_id'), 'coupon_template', ['store_id'], unique=False)
    op.create_table('coupon_push',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('template_id', sa.Integer(), nullable=False),
    sa.Column('segment_id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('queued', 'done', name='pushstatus', native_enum=False, length=16), nullable=False),
    sa.Column('issued', sa.Integer(), nullable=False),
    sa.Column('skipped', sa.Integer(), nullable=False),
    sa.Column('sold_out', sa.Integer(), nullable=False),
    sa.Column('created_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('finished_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['created_by'], ['staff.id'], name=op.f('fk_coupon_push_created_by_staff')),
    sa.ForeignKeyConstraint(['template_id'], ['coupon_template.id'], name=op.f('fk_coupon_push_template_id_coupon_template')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupon_push')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    op.create_index(op.f('ix_coupon_push_template_id'), 'coupon_push', ['template_id'], unique=False)
    op.create_table('coupon',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('template_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=12), nullable=False),
    sa.Column('status', sa.Enum('unused', 'locked', 'used', 'expired', name='couponstatus', native_enum=False, length=16), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('issue_key', sa.String(length=191), nullable=False),
    sa.Column('valid_from', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('valid_until', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('issued_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('used_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('campaign_id', sa.Integer(), nullable=True),
    sa.Column('locked_order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('discount_fen', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_coupon_customer_id_customer')),
    sa.ForeignKeyConstraint(['locked_order_id'], ['payment_order.id'], name=op.f('fk_coupon_locked_order_id_payment_order')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupon')),
    sa.UniqueConstraint('code', name=op.f('uq_coupon_code')),
    sa.UniqueConstraint('issue_key', name=op.f('uq_coupon_issue_key')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    op.create_index(op.f('ix_coupon_campaign_id'), 'coupon', ['campaign_id'], unique=False)
    op.create_index('ix_coupon_customer_status', 'coupon', ['customer_id', 'status'], unique=False)
    op.create_index(op.f('ix_coupon_locked_order_id'), 'coupon', ['locked_order_id'], unique=False)
    op.create_index(op.f('ix_coupon_template_id'), 'coupon', ['template_id'], unique=False)
    op.create_table('coupon_write_off',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('coupon_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('used_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('reversed_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('reversed_by', sa.Integer(), nullable=True),
    sa.Column('reverse_reason', sa.String(length=255), nullable=True),
    sa.ForeignKeyConstraint(['coupon_id'], ['coupon.id'], name=op.f('fk_coupon_write_off_coupon_id_coupon')),
    sa.ForeignKeyConstraint(['reversed_by'], ['staff.id'], name=op.f('fk_coupon_write_off_reversed_by_staff')),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_coupon_write_off_staff_id_staff')),
    sa.ForeignKeyConstraint(['store_id'], ['org_unit.id'], name=op.f('fk_coupon_write_off_store_id_org_unit')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupon_write_off')),
    sa.UniqueConstraint('nonce', name=op.f('uq_coupon_write_off_nonce')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    op.create_index(op.f('ix_coupon_write_off_coupon_id'), 'coupon_write_off', ['coupon_id'], unique=False)
    op.create_index(op.f('ix_coupon_write_off_store_id'), 'coupon_write_off', ['store_id'], unique=False)
    op.add_column('mall_item', sa.Column('coupon_template_id', sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column('mall_item', 'coupon_template_id')
    op.drop_table('coupon_write_off')
    op.drop_table('coupon')
    op.drop_table('coupon_push')
    op.drop_table('coupon_template')
    op.drop_table('coupon_claim_counter')
