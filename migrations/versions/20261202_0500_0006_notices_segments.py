"""owner subscribe notices and grants (the points notices move into them)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 05:00:00
"""

import sqlalchemy as sa
from alembic import op

import backend.platform.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscribe_grant",
        sa.Column("openid", sa.String(length=64), nullable=False),
        sa.Column("template_id", sa.String(length=64), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=False),
        sa.Column("updated_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("openid", "template_id", name=op.f("pk_subscribe_grant")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "subscribe_notice",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("template_setting", sa.String(length=64), nullable=False),
        sa.Column("template_id", sa.String(length=64), nullable=True),
        sa.Column("dedup_key", sa.String(length=191), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("page", sa.String(length=255), nullable=True),
        sa.Column("store_id", sa.Integer(), nullable=True),
        sa.Column("advisor_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("errcode", sa.Integer(), nullable=True),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("sent_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name=op.f("fk_subscribe_notice_customer_id_customer")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscribe_notice")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_subscribe_notice_dedup_key")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(op.f("ix_subscribe_notice_customer_id"), "subscribe_notice", ["customer_id"], unique=False)
    op.create_index(op.f("ix_subscribe_notice_status"), "subscribe_notice", ["status"], unique=False)
    # Points notices are subscribe notices now (backend/points/notices.py); no deployment has
    # rows in the old table yet, so it is dropped rather than copied.
    op.drop_table("points_notice")


def downgrade() -> None:
    op.create_table(
        "points_notice",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("dedup_key", sa.String(length=191), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sent_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("errcode", sa.Integer(), nullable=True),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], name=op.f("fk_points_notice_customer_id_customer")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_points_notice")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_points_notice_dedup_key")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(op.f("ix_points_notice_customer_id"), "points_notice", ["customer_id"], unique=False)
    op.drop_table("subscribe_notice")
    op.drop_table("subscribe_grant")
