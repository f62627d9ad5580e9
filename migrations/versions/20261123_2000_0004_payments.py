"""payments tables: payment_order, payment_refund, payment_issue, payment_reconciliation;
service packages: service_package, package_purchase, package_use

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 20:00:00
"""

import sqlalchemy as sa
from alembic import op

import backend.platform.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('payment_reconciliation',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('bill_date', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('bill_rows', sa.Integer(), nullable=False),
    sa.Column('matched', sa.Integer(), nullable=False),
    sa.Column('issues', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('ran_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_reconciliation')),
    sa.UniqueConstraint('bill_date', name=op.f('uq_payment_reconciliation_bill_date')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    op.create_table('payment_order',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('out_trade_no', sa.String(length=32), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=True),
    sa.Column('business_type', sa.String(length=32), nullable=False),
    sa.Column('business_id', sa.String(length=64), nullable=False),
    sa.Column('open_key', sa.String(length=100), nullable=True),
    sa.Column('description', sa.String(length=127), nullable=False),
    sa.Column('amount_fen', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('pending', 'paid', 'partially_refunded', 'refunded', 'closed', name='orderstate', native_enum=False, length=24), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=False),
    sa.Column('expires_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('prepay_id', sa.String(length=64), nullable=True),
    sa.Column('prepaid_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('transaction_id', sa.String(length=32), nullable=True),
    sa.Column('paid_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('payer_total_fen', sa.Integer(), nullable=True),
    sa.Column('paid_via', sa.String(length=16), nullable=True),
    sa.Column('closed_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('refund_reserved_fen', sa.Integer(), nullable=False),
    sa.Column('refunded_fen', sa.Integer(), nullable=False),
    sa.Column('refund_count', sa.Integer(), nullable=False),
    sa.Column('flagged', sa.Boolean(), nullable=False),
    sa.Column('created_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('updated_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_payment_order_customer_id_customer')),
    sa.ForeignKeyConstraint(['store_id'], ['org_unit.id'], name=op.f('fk_payment_order_store_id_org_unit')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_order')),
    sa.UniqueConstraint('open_key', name=op.f('uq_payment_order_open_key')),
    sa.UniqueConstraint('out_trade_no', name=op.f('uq_payment_order_out_trade_no')),
    sa.UniqueConstraint('transaction_id', name=op.f('uq_payment_order_transaction_id')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    with op.batch_alter_table('payment_order', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_order_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_payment_order_state_expires', ['state', 'expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_payment_order_store_id'), ['store_id'], unique=False)

    op.create_table('payment_issue',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('dedup_key', sa.String(length=191), nullable=False),
    sa.Column('out_trade_no', sa.String(length=32), nullable=True),
    sa.Column('out_refund_no', sa.String(length=64), nullable=True),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('reconciliation_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('resolution', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.Column('handled_by', sa.String(length=64), nullable=True),
    sa.Column('handled_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('handling_note', sa.String(length=255), nullable=True),
    sa.Column('created_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['payment_order.id'], name=op.f('fk_payment_issue_order_id_payment_order')),
    sa.ForeignKeyConstraint(['reconciliation_id'], ['payment_reconciliation.id'], name=op.f('fk_payment_issue_reconciliation_id_payment_reconciliation')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_issue')),
    sa.UniqueConstraint('dedup_key', name=op.f('uq_payment_issue_dedup_key')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    with op.batch_alter_table('payment_issue', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_issue_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_payment_issue_out_trade_no'), ['out_trade_no'], unique=False)

    op.create_table('payment_refund',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('out_refund_no', sa.String(length=64), nullable=False),
    sa.Column('refund_id', sa.String(length=32), nullable=True),
    sa.Column('amount_fen', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=80), nullable=False),
    sa.Column('state', sa.Enum('processing', 'succeeded', 'closed', 'abnormal', name='refundstate', native_enum=False, length=16), nullable=False),
    sa.Column('requested_by', sa.String(length=64), nullable=False),
    sa.Column('submitted', sa.Boolean(), nullable=False),
    sa.Column('succeeded_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('created_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('updated_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['payment_order.id'], name=op.f('fk_payment_refund_order_id_payment_order')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_refund')),
    sa.UniqueConstraint('out_refund_no', name=op.f('uq_payment_refund_out_refund_no')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    with op.batch_alter_table('payment_refund', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_refund_order_id'), ['order_id'], unique=False)
    # service packages (保养套餐), the first business object sold for cash
    op.create_table('service_package',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('description', sa.String(length=500), nullable=True),
    sa.Column('service_type', sa.String(length=32), nullable=False),
    sa.Column('uses', sa.Integer(), nullable=False),
    sa.Column('price_fen', sa.Integer(), nullable=False),
    sa.Column('valid_days', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('updated_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['store_id'], ['org_unit.id'], name=op.f('fk_service_package_store_id_org_unit')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service_package')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    with op.batch_alter_table('service_package', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_service_package_store_id'), ['store_id'], unique=False)

    op.create_table('package_purchase',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('package_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('service_type', sa.String(length=32), nullable=False),
    sa.Column('price_fen', sa.Integer(), nullable=False),
    sa.Column('uses_total', sa.Integer(), nullable=False),
    sa.Column('uses_left', sa.Integer(), nullable=False),
    sa.Column('uses_refunded', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('awaiting_payment', 'active', 'used_up', 'expired', 'refunded', 'closed', name='purchasestate', native_enum=False, length=24), nullable=False),
    sa.Column('code', sa.String(length=12), nullable=True),
    sa.Column('pay_expires_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('paid_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('expires_at', backend.platform.db.UTCDateTime(), nullable=True),
    sa.Column('created_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.Column('updated_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_package_purchase_customer_id_customer')),
    sa.ForeignKeyConstraint(['package_id'], ['service_package.id'], name=op.f('fk_package_purchase_package_id_service_package')),
    sa.ForeignKeyConstraint(['store_id'], ['org_unit.id'], name=op.f('fk_package_purchase_store_id_org_unit')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_package_purchase')),
    sa.UniqueConstraint('code', name=op.f('uq_package_purchase_code')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    with op.batch_alter_table('package_purchase', schema=None) as batch_op:
        batch_op.create_index('ix_package_purchase_customer_id_id', ['customer_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_package_purchase_package_id'), ['package_id'], unique=False)
        batch_op.create_index('ix_package_purchase_state_expires', ['state', 'expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_package_purchase_store_id'), ['store_id'], unique=False)

    op.create_table('package_use',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('purchase_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('uses_left_after', sa.Integer(), nullable=False),
    sa.Column('used_at', backend.platform.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['purchase_id'], ['package_purchase.id'], name=op.f('fk_package_use_purchase_id_package_purchase')),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_package_use_staff_id_staff')),
    sa.ForeignKeyConstraint(['store_id'], ['org_unit.id'], name=op.f('fk_package_use_store_id_org_unit')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_package_use')),
    sa.UniqueConstraint('purchase_id', 'nonce', name=op.f('uq_package_use_purchase_id_nonce')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    with op.batch_alter_table('package_use', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_package_use_purchase_id'), ['purchase_id'], unique=False)


def downgrade() -> None:
    op.drop_table('package_use')
    op.drop_table('package_purchase')
    op.drop_table('service_package')
    op.drop_table("payment_refund")
    op.drop_table("payment_issue")
    op.drop_table("payment_order")
    op.drop_table("payment_reconciliation")
