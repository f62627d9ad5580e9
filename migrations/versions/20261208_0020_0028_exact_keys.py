"""exact keys: opaque machine keys compare byte for byte (a binary NO PAD collation)

The tables' utf8mb4_unicode_ci folds case, accents and widths and ignores trailing spaces, so a
client's Idempotency-Key "KeyA" and "keya" were one key (the second, different request got the
first's stored answer or a 422), as were bulk-grant batch keys (in the outbox dedup key and the
ledger keys), message client_ids, scan nonces, staff-chosen refund numbers and WeChat openids.
These columns now use the server's exact collation (`ExactString`); human-typed codes (coupon
exchange codes, store and org codes, VINs, WeCom userids) stay case-insensitive on purpose.

SQLite's default BINARY collation is exact already: nothing to do there. The downgrade fails
(duplicate key) if two values that differ only in case were stored meanwhile; that is the point.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-08 00:20:00
"""

import sqlalchemy as sa
from alembic import op

import backend.platform.db

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

# (table, column, length, nullable)
EXACT_COLUMNS = [
    ("idempotency_record", "key", 128, False),
    ("outbox_job", "dedup_key", 191, True),
    ("points_ledger", "idempotency_key", 191, False),
    ("points_ledger", "ref_id", 64, True),
    ("consult_message", "client_id", 64, True),
    ("coupon_write_off", "nonce", 64, False),
    ("package_use", "nonce", 64, False),
    ("event_checkin_scan", "nonce", 64, False),
    ("payment_order", "out_trade_no", 32, False),
    ("payment_refund", "out_refund_no", 64, False),
    ("payment_issue", "dedup_key", 191, False),
    ("payment_issue", "out_trade_no", 32, True),
    ("payment_issue", "out_refund_no", 64, True),
    ("customer_identity", "value", 128, False),
    ("subscribe_grant", "openid", 64, False),
]


def _alter(exact: bool) -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    for table, column, length, nullable in EXACT_COLUMNS:
        exact_type = backend.platform.db.ExactString(length)
        folding_type = sa.String(length)
        op.alter_column(
            table,
            column,
            type_=exact_type if exact else folding_type,
            existing_type=folding_type if exact else exact_type,
            existing_nullable=nullable,
            nullable=nullable,
        )


def upgrade() -> None:
    _alter(exact=True)


def downgrade() -> None:
    _alter(exact=False)
