"""wecom tables

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 20:00:00
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

import backend.platform.db  # noqa: F401

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wecom_app_message",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("dedup_key", sa.String(length=191), nullable=False),
        sa.Column("touser", sa.JSON(), nullable=False),
        sa.Column("msgtype", sa.String(length=16), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("msgid", sa.String(length=64), nullable=True),
        sa.Column("invalid_users", sa.String(length=255), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("sent_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wecom_app_message")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_wecom_app_message_dedup_key")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "wecom_raw_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("corp_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=32), nullable=False),
        sa.Column("dedup_hash", sa.String(length=64), nullable=False),
        sa.Column("dedup_key", sa.String(length=512), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("change_type", sa.String(length=64), nullable=False),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sa.Column("xml", sa.Text(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "received",
                "retrying",
                "processed",
                "ignored",
                "dead",
                name="raweventstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("replays", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("received_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("processed_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wecom_raw_event")),
        sa.UniqueConstraint("dedup_hash", name=op.f("uq_wecom_raw_event_dedup_hash")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_wecom_raw_event_status_id", "wecom_raw_event", ["status", "id"], unique=False)
    op.create_table(
        "wecom_tag",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("corp_id", sa.String(length=64), nullable=False),
        sa.Column("tag_id", sa.String(length=64), nullable=False),
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("group_name", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("synced_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wecom_tag")),
        sa.UniqueConstraint("corp_id", "tag_id", name=op.f("uq_wecom_tag_corp_id_tag_id")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "wecom_welcome_template",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["store_id"], ["org_unit.id"], name=op.f("fk_wecom_welcome_template_store_id_org_unit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wecom_welcome_template")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(op.f("ix_wecom_welcome_template_store_id"), "wecom_welcome_template", ["store_id"], unique=False)
    op.create_table(
        "wecom_channel",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("corp_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=30), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=True),
        sa.Column("userids", sa.JSON(), nullable=False),
        sa.Column("skip_verify", sa.Boolean(), nullable=False),
        sa.Column("auto_tag_ids", sa.JSON(), nullable=False),
        sa.Column("welcome_template_id", sa.Integer(), nullable=True),
        sa.Column("config_id", sa.String(length=64), nullable=True),
        sa.Column("qr_code", sa.String(length=255), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("daily_cap", sa.Integer(), nullable=True),
        sa.Column("fallback_userids", sa.JSON(), nullable=False),
        sa.Column("applied_userids", sa.JSON(), nullable=False),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["store_id"], ["org_unit.id"], name=op.f("fk_wecom_channel_store_id_org_unit")),
        sa.ForeignKeyConstraint(
            ["welcome_template_id"],
            ["wecom_welcome_template.id"],
            name=op.f("fk_wecom_channel_welcome_template_id_wecom_welcome_template"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wecom_channel")),
        sa.UniqueConstraint("corp_id", "state", name=op.f("uq_wecom_channel_corp_id_state")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(op.f("ix_wecom_channel_store_id"), "wecom_channel", ["store_id"], unique=False)
    op.create_table(
        "wecom_welcome_message",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("raw_event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("errcode", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name=op.f("fk_wecom_welcome_message_customer_id_customer")
        ),
        sa.ForeignKeyConstraint(
            ["raw_event_id"], ["wecom_raw_event.id"], name=op.f("fk_wecom_welcome_message_raw_event_id_wecom_raw_event")
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["wecom_welcome_template.id"],
            name=op.f("fk_wecom_welcome_message_template_id_wecom_welcome_template"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wecom_welcome_message")),
        sa.UniqueConstraint("raw_event_id", name=op.f("uq_wecom_welcome_message_raw_event_id")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(
        op.f("ix_wecom_welcome_message_customer_id"), "wecom_welcome_message", ["customer_id"], unique=False
    )
    op.create_table(
        "wecom_friend",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("corp_id", sa.String(length=64), nullable=False),
        sa.Column("userid", sa.String(length=64), nullable=False),
        sa.Column("external_userid", sa.String(length=64), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "half",
                "deleted_by_customer",
                "deleted_by_advisor",
                "transferred",
                name="friendstatus",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("channel_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=64), nullable=True),
        sa.Column("add_way", sa.Integer(), nullable=True),
        sa.Column("remark", sa.String(length=128), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("remark_mobiles", sa.JSON(), nullable=False),
        sa.Column("added_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("lost_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["wecom_channel.id"], name=op.f("fk_wecom_friend_channel_id_wecom_channel")
        ),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], name=op.f("fk_wecom_friend_customer_id_customer")),
        sa.ForeignKeyConstraint(["staff_id"], ["staff.id"], name=op.f("fk_wecom_friend_staff_id_staff")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wecom_friend")),
        sa.UniqueConstraint(
            "corp_id", "userid", "external_userid", name=op.f("uq_wecom_friend_corp_id_userid_external_userid")
        ),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(op.f("ix_wecom_friend_channel_id"), "wecom_friend", ["channel_id"], unique=False)
    op.create_index("ix_wecom_friend_customer", "wecom_friend", ["customer_id"], unique=False)
    op.create_index("ix_wecom_friend_staff_status", "wecom_friend", ["staff_id", "status"], unique=False)
    op.create_table(
        "wecom_alert",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("raw_event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "deleted_by_customer",
                "deleted_by_advisor",
                "transfer_failed",
                name="alertkind",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("friend_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=True),
        sa.Column("store_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("occurred_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("resolved_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], name=op.f("fk_wecom_alert_customer_id_customer")),
        sa.ForeignKeyConstraint(["friend_id"], ["wecom_friend.id"], name=op.f("fk_wecom_alert_friend_id_wecom_friend")),
        sa.ForeignKeyConstraint(
            ["raw_event_id"], ["wecom_raw_event.id"], name=op.f("fk_wecom_alert_raw_event_id_wecom_raw_event")
        ),
        sa.ForeignKeyConstraint(["staff_id"], ["staff.id"], name=op.f("fk_wecom_alert_staff_id_staff")),
        sa.ForeignKeyConstraint(["store_id"], ["org_unit.id"], name=op.f("fk_wecom_alert_store_id_org_unit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wecom_alert")),
        sa.UniqueConstraint("raw_event_id", name=op.f("uq_wecom_alert_raw_event_id")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(op.f("ix_wecom_alert_customer_id"), "wecom_alert", ["customer_id"], unique=False)
    op.create_index(op.f("ix_wecom_alert_friend_id"), "wecom_alert", ["friend_id"], unique=False)
    op.create_index("ix_wecom_alert_kind_resolved", "wecom_alert", ["kind", "resolved_at"], unique=False)
    op.create_index(op.f("ix_wecom_alert_store_id"), "wecom_alert", ["store_id"], unique=False)
    op.create_table(
        "wecom_friend_tag",
        sa.Column(
            "friend_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False
        ),
        sa.Column("tag_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["friend_id"],
            ["wecom_friend.id"],
            name=op.f("fk_wecom_friend_tag_friend_id_wecom_friend"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("friend_id", "tag_id", name=op.f("pk_wecom_friend_tag")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "wecom_channel_fact",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("source_ref", sa.String(length=191), nullable=False),
        sa.Column("friend_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=True),
        sa.Column("userid", sa.String(length=64), nullable=False),
        sa.Column(
            "kind", sa.Enum("added", "lost", name="channelfactkind", native_enum=False, length=8), nullable=False
        ),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("occurred_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["wecom_channel.id"], name=op.f("fk_wecom_channel_fact_channel_id_wecom_channel")
        ),
        sa.ForeignKeyConstraint(
            ["friend_id"],
            ["wecom_friend.id"],
            name=op.f("fk_wecom_channel_fact_friend_id_wecom_friend"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wecom_channel_fact")),
        sa.UniqueConstraint("source_ref", name=op.f("uq_wecom_channel_fact_source_ref")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_wecom_channel_fact_channel_day", "wecom_channel_fact", ["channel_id", "day"], unique=False)
    op.create_index("ix_wecom_channel_fact_friend_at", "wecom_channel_fact", ["friend_id", "occurred_at"], unique=False)
    op.create_table(
        "wecom_group_chat",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("corp_id", sa.String(length=64), nullable=False),
        sa.Column("chat_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=True),
        sa.Column("owner_userid", sa.String(length=64), nullable=True),
        sa.Column("owner_staff_id", sa.Integer(), nullable=True),
        sa.Column("notice", sa.Text(), nullable=True),
        sa.Column(
            "status",
            sa.Enum("active", "dismissed", name="groupchatstatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("created_time", sa.BigInteger(), nullable=True),
        sa.Column("dismissed_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_staff_id"], ["staff.id"], name=op.f("fk_wecom_group_chat_owner_staff_id_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wecom_group_chat")),
        sa.UniqueConstraint("corp_id", "chat_id", name=op.f("uq_wecom_group_chat_corp_id_chat_id")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(op.f("ix_wecom_group_chat_owner_staff_id"), "wecom_group_chat", ["owner_staff_id"], unique=False)
    op.create_table(
        "wecom_group_member",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("chat_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("userid", sa.String(length=64), nullable=False),
        sa.Column("member_type", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("staff_id", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("join_time", sa.BigInteger(), nullable=True),
        sa.Column("join_scene", sa.Integer(), nullable=True),
        sa.Column("left_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["chat_pk"],
            ["wecom_group_chat.id"],
            name=op.f("fk_wecom_group_member_chat_pk_wecom_group_chat"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name=op.f("fk_wecom_group_member_customer_id_customer")
        ),
        sa.ForeignKeyConstraint(["staff_id"], ["staff.id"], name=op.f("fk_wecom_group_member_staff_id_staff")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wecom_group_member")),
        sa.UniqueConstraint("chat_pk", "userid", name=op.f("uq_wecom_group_member_chat_pk_userid")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_wecom_group_member_customer", "wecom_group_member", ["customer_id"], unique=False)


def downgrade() -> None:
    op.drop_table("wecom_group_member")
    op.drop_table("wecom_group_chat")
    op.drop_table("wecom_channel_fact")
    op.drop_table("wecom_friend_tag")
    op.drop_table("wecom_alert")
    op.drop_table("wecom_friend")
    op.drop_table("wecom_welcome_message")
    op.drop_table("wecom_channel")
    op.drop_table("wecom_welcome_template")
    op.drop_table("wecom_tag")
    op.drop_table("wecom_raw_event")
    op.drop_table("wecom_app_message")
