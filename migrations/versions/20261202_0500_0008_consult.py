"""consultations between owners and advisors

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 05:00:00
"""

import sqlalchemy as sa
from alembic import op

import backend.platform.db

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consult_store_setting",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("sla_minutes", sa.Integer(), nullable=False),
        sa.Column("updated_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["store_id"], ["org_unit.id"], name=op.f("fk_consult_store_setting_store_id_org_unit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consult_store_setting")),
        sa.UniqueConstraint("store_id", name=op.f("uq_consult_store_setting_store_id")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "consult_conversation",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column(
            "topic",
            sa.Enum(
                "new_car",
                "used_car",
                "service",
                "insurance",
                "finance",
                "other",
                name="topic",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("car_id", sa.Integer(), nullable=True),
        sa.Column("advisor_id", sa.Integer(), nullable=True),
        sa.Column(
            "status", sa.Enum("open", "closed", name="conversationstatus", native_enum=False, length=16), nullable=False
        ),
        sa.Column("claimed_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("last_message_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("last_excerpt", sa.String(length=64), nullable=True),
        sa.Column("awaiting_since", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("due_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("overdue_alerted_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("first_message_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("first_response_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("first_response_seconds", sa.Integer(), nullable=True),
        sa.Column("first_response_business_seconds", sa.Integer(), nullable=True),
        sa.Column("response_count", sa.Integer(), nullable=False),
        sa.Column("closed_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("closed_by", sa.String(length=16), nullable=True),
        sa.Column("closed_by_staff_id", sa.Integer(), nullable=True),
        sa.Column("resolution_seconds", sa.Integer(), nullable=True),
        sa.Column("resolution_business_seconds", sa.Integer(), nullable=True),
        sa.Column("reopened_count", sa.Integer(), nullable=False),
        sa.Column("transfer_count", sa.Integer(), nullable=False),
        sa.Column("owner_read_message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("staff_read_message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["advisor_id"], ["staff.id"], name=op.f("fk_consult_conversation_advisor_id_staff")),
        sa.ForeignKeyConstraint(["car_id"], ["car.id"], name=op.f("fk_consult_conversation_car_id_car")),
        sa.ForeignKeyConstraint(
            ["closed_by_staff_id"], ["staff.id"], name=op.f("fk_consult_conversation_closed_by_staff_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name=op.f("fk_consult_conversation_customer_id_customer")
        ),
        sa.ForeignKeyConstraint(["store_id"], ["org_unit.id"], name=op.f("fk_consult_conversation_store_id_org_unit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consult_conversation")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(
        "ix_consult_conversation_advisor_status",
        "consult_conversation",
        ["advisor_id", "status", "last_message_at"],
        unique=False,
    )
    op.create_index(
        "ix_consult_conversation_customer_id_id", "consult_conversation", ["customer_id", "id"], unique=False
    )
    op.create_index("ix_consult_conversation_status_due", "consult_conversation", ["status", "due_at"], unique=False)
    op.create_index(
        "ix_consult_conversation_store_status",
        "consult_conversation",
        ["store_id", "status", "advisor_id"],
        unique=False,
    )
    op.create_table(
        "consult_message",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sender", sa.Enum("owner", "staff", name="sender", native_enum=False, length=8), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=True),
        sa.Column(
            "kind",
            sa.Enum("text", "image", "car_card", "booking_card", name="messagekind", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("text", sa.String(length=1000), nullable=True),
        sa.Column("ref", sa.JSON(), nullable=True),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["consult_conversation.id"],
            name=op.f("fk_consult_message_conversation_id_consult_conversation"),
        ),
        sa.ForeignKeyConstraint(["staff_id"], ["staff.id"], name=op.f("fk_consult_message_staff_id_staff")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consult_message")),
        sa.UniqueConstraint(
            "conversation_id", "sender", "client_id", name=op.f("uq_consult_message_conversation_id_sender_client_id")
        ),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_consult_message_conversation_id_id", "consult_message", ["conversation_id", "id"], unique=False)
    op.create_table(
        "consult_response",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("advisor_id", sa.Integer(), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("first_response", "reply", name="responsekind", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("waiting_since", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("responded_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("seconds", sa.Integer(), nullable=False),
        sa.Column("business_seconds", sa.Integer(), nullable=False),
        sa.Column("sla_seconds", sa.Integer(), nullable=False),
        sa.Column("within_sla", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["advisor_id"], ["staff.id"], name=op.f("fk_consult_response_advisor_id_staff")),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["consult_conversation.id"],
            name=op.f("fk_consult_response_conversation_id_consult_conversation"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name=op.f("fk_consult_response_customer_id_customer")
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["consult_message.id"], name=op.f("fk_consult_response_message_id_consult_message")
        ),
        sa.ForeignKeyConstraint(["store_id"], ["org_unit.id"], name=op.f("fk_consult_response_store_id_org_unit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consult_response")),
        sa.UniqueConstraint("message_id", name=op.f("uq_consult_response_message_id")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(
        "ix_consult_response_advisor_time", "consult_response", ["advisor_id", "responded_at"], unique=False
    )
    op.create_index(op.f("ix_consult_response_conversation_id"), "consult_response", ["conversation_id"], unique=False)
    op.create_index(op.f("ix_consult_response_customer_id"), "consult_response", ["customer_id"], unique=False)
    op.create_index("ix_consult_response_store_time", "consult_response", ["store_id", "responded_at"], unique=False)


def downgrade() -> None:
    op.drop_table("consult_response")
    op.drop_table("consult_message")
    op.drop_table("consult_conversation")
    op.drop_table("consult_store_setting")
