"""points tables: points_account, points_ledger, points_allocation, points_signin, points_notice,
points_adjustment, mall_item, mall_member_counter, mall_order, mall_code

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 20:00:00
"""

import sqlalchemy as sa
from alembic import op

import backend.platform.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('mall_item',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('description', sa.String(length=1000), nullable=True),
    sa.Column('kind', sa.Enum('physical', 'virtual_code', 'coupon', 'service_voucher', name='itemkind', native_enum=False, length=24), nullable=False),
    sa.Column('points_price', sa.Integer(), nullable=False),
    sa.Column('cash_fen', sa.Integer(), nullable=False),
    sa.Column('stock', sa.Integer(), nullable=False),
    sa.Column('sold', sa.Integer(), nullable=False),
    sa.Column('per_order_limit', sa.Integer(), nullable=False),
    sa.Column('per_member_limit', sa.Integer(), nullable=True),
    sa.Column('limit_period', sa.Enum('none', 'day', 'week', 'month', name='limitperiod', native_enum=False, length=8), nullable=False),
    sa.Column('per_period_limit', sa.Integer(), nullable=True),
    sa.Column('min_tier', sa.String(length=32), nullable=True),
    sa.Column('sale_starts_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('sale_ends_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('store_id', sa.Integer(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('updated_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['store_id'], ['org_unit.id'], name=op.f('fk_mall_item_store_id_org_unit')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mall_item')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    op.create_index(op.f('ix_mall_item_store_id'), 'mall_item', ['store_id'], unique=False)
    op.create_table('mall_member_counter',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('item_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('period_key', sa.String(length=16), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_mall_member_counter_customer_id_customer')),
    sa.ForeignKeyConstraint(['item_id'], ['mall_item.id'], name=op.f('fk_mall_member_counter_item_id_mall_item')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mall_member_counter')),
    sa.UniqueConstraint('item_id', 'customer_id', 'period_key', name=op.f('uq_mall_member_counter_item_id_customer_id_period_key')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    op.create_index(op.f('ix_mall_member_counter_customer_id'), 'mall_member_counter', ['customer_id'], unique=False)
    op.create_table('points_account',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('available', sa.Integer(), nullable=False),
    sa.Column('pending', sa.Integer(), nullable=False),
    sa.Column('frozen', sa.Integer(), nullable=False),
    sa.Column('lifetime_earned', sa.Integer(), nullable=False),
    sa.Column('tier_since', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_points_account_customer_id_customer')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_account')),
    sa.UniqueConstraint('customer_id', name=op.f('uq_points_account_customer_id')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    op.create_table('points_ledger',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('earn', 'earn_pending', 'activate', 'pending_cancel', 'spend', 'freeze', 'consume', 'release', 'restore', 'expire', 'reverse', 'adjust', name='ledgerkind', native_enum=False, length=16), nullable=False),
    sa.Column('delta', sa.Integer(), nullable=False),
    sa.Column('pending_delta', sa.Integer(), nullable=False),
    sa.Column('frozen_delta', sa.Integer(), nullable=False),
    sa.Column('growth', sa.Integer(), nullable=False),
    sa.Column('reason_code', sa.String(length=48), nullable=False),
    sa.Column('ref_type', sa.String(length=32), nullable=True),
    sa.Column('ref_id', sa.String(length=64), nullable=True),
    sa.Column('idempotency_key', sa.String(length=191), nullable=False),
    sa.Column('operator', sa.String(length=64), nullable=False),
    sa.Column('note', sa.String(length=255), nullable=True),
    sa.Column('remaining', sa.Integer(), nullable=False),
    sa.Column('expires_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('activates_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('related_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('balance_after', sa.Integer(), nullable=False),
    sa.Column('created_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_points_ledger_customer_id_customer')),
    sa.ForeignKeyConstraint(['related_id'], ['points_ledger.id'], name=op.f('fk_points_ledger_related_id_points_ledger')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_ledger')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_points_ledger_idempotency_key')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    op.create_index('ix_points_ledger_customer_bucket', 'points_ledger', ['customer_id', 'remaining', 'expires_at'], unique=False)
    op.create_index('ix_points_ledger_customer_id_id', 'points_ledger', ['customer_id', 'id'], unique=False)
    op.create_index('ix_points_ledger_expiry', 'points_ledger', ['expires_at', 'remaining'], unique=False)
    op.create_index('ix_points_ledger_ref', 'points_ledger', ['ref_type', 'ref_id'], unique=False)
    op.create_table('points_notice',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('dedup_key', sa.String(length=191), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('sent_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('errcode', sa.Integer(), nullable=True),
    sa.Column('created_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_points_notice_customer_id_customer')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_notice')),
    sa.UniqueConstraint('dedup_key', name=op.f('uq_points_notice_dedup_key')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    op.create_index(op.f('ix_points_notice_customer_id'), 'points_notice', ['customer_id'], unique=False)
    op.create_table('mall_order',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('order_no', sa.String(length=32), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('item_kind', sa.Enum('physical', 'virtual_code', 'coupon', 'service_voucher', name='itemkind', native_enum=False, length=24), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('points_total', sa.Integer(), nullable=False),
    sa.Column('cash_fen_total', sa.Integer(), nullable=False),
    sa.Column('period_key', sa.String(length=16), nullable=True),
    sa.Column('state', sa.Enum('awaiting_payment', 'placed', 'shipped', 'completed', 'cancelled', 'closed', name='mallorderstate', native_enum=False, length=24), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=True),
    sa.Column('points_ledger_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('address', sa.JSON(), nullable=True),
    sa.Column('carrier', sa.String(length=32), nullable=True),
    sa.Column('tracking_no', sa.String(length=64), nullable=True),
    sa.Column('shipped_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('voucher_code', sa.String(length=16), nullable=True),
    sa.Column('redeemed_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('pay_expires_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('cancelled_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('cancel_reason', sa.String(length=255), nullable=True),
    sa.Column('created_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('updated_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_mall_order_customer_id_customer')),
    sa.ForeignKeyConstraint(['item_id'], ['mall_item.id'], name=op.f('fk_mall_order_item_id_mall_item')),
    sa.ForeignKeyConstraint(['points_ledger_id'], ['points_ledger.id'], name=op.f('fk_mall_order_points_ledger_id_points_ledger')),
    sa.ForeignKeyConstraint(['store_id'], ['org_unit.id'], name=op.f('fk_mall_order_store_id_org_unit')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mall_order')),
    sa.UniqueConstraint('order_no', name=op.f('uq_mall_order_order_no')),
    sa.UniqueConstraint('voucher_code', name=op.f('uq_mall_order_voucher_code')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    op.create_index('ix_mall_order_customer_id_id', 'mall_order', ['customer_id', 'id'], unique=False)
    op.create_index(op.f('ix_mall_order_item_id'), 'mall_order', ['item_id'], unique=False)
    op.create_index(op.f('ix_mall_order_state'), 'mall_order', ['state'], unique=False)
    op.create_index(op.f('ix_mall_order_store_id'), 'mall_order', ['store_id'], unique=False)
    op.create_table('points_adjustment',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('delta', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=False),
    sa.Column('state', sa.Enum('pending', 'applied', 'rejected', name='adjustmentstate', native_enum=False, length=16), nullable=False),
    sa.Column('requested_by', sa.Integer(), nullable=False),
    sa.Column('decided_by', sa.Integer(), nullable=True),
    sa.Column('ledger_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('decided_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_points_adjustment_customer_id_customer')),
    sa.ForeignKeyConstraint(['decided_by'], ['staff.id'], name=op.f('fk_points_adjustment_decided_by_staff')),
    sa.ForeignKeyConstraint(['ledger_id'], ['points_ledger.id'], name=op.f('fk_points_adjustment_ledger_id_points_ledger')),
    sa.ForeignKeyConstraint(['requested_by'], ['staff.id'], name=op.f('fk_points_adjustment_requested_by_staff')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_adjustment')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    op.create_index(op.f('ix_points_adjustment_customer_id'), 'points_adjustment', ['customer_id'], unique=False)
    op.create_table('points_allocation',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('debit_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('credit_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['credit_id'], ['points_ledger.id'], name=op.f('fk_points_allocation_credit_id_points_ledger')),
    sa.ForeignKeyConstraint(['debit_id'], ['points_ledger.id'], name=op.f('fk_points_allocation_debit_id_points_ledger')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_allocation')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    op.create_index(op.f('ix_points_allocation_credit_id'), 'points_allocation', ['credit_id'], unique=False)
    op.create_index(op.f('ix_points_allocation_debit_id'), 'points_allocation', ['debit_id'], unique=False)
    op.create_table('points_signin',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('sign_date', sa.Date(), nullable=False),
    sa.Column('streak', sa.Integer(), nullable=False),
    sa.Column('cycle_day', sa.Integer(), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('ledger_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_points_signin_customer_id_customer')),
    sa.ForeignKeyConstraint(['ledger_id'], ['points_ledger.id'], name=op.f('fk_points_signin_ledger_id_points_ledger')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_signin')),
    sa.UniqueConstraint('customer_id', 'sign_date', name=op.f('uq_points_signin_customer_id_sign_date')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    op.create_table('mall_code',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('item_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('assigned_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['item_id'], ['mall_item.id'], name=op.f('fk_mall_code_item_id_mall_item')),
    sa.ForeignKeyConstraint(['order_id'], ['mall_order.id'], name=op.f('fk_mall_code_order_id_mall_order')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mall_code')),
    sa.UniqueConstraint('code', name=op.f('uq_mall_code_code')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    op.create_index('ix_mall_code_item_order', 'mall_code', ['item_id', 'order_id'], unique=False)
    # ### end Alembic commands ###


def downgrade() -> None:
    op.drop_table('mall_code')
    op.drop_table('points_signin')
    op.drop_table('points_allocation')
    op.drop_table('points_adjustment')
    op.drop_table('mall_order')
    op.drop_table('points_notice')
    op.drop_table('points_ledger')
    op.drop_table('points_account')
    op.drop_table('mall_member_counter')
    op.drop_table('mall_item')
    # ### end Alembic commands ###
