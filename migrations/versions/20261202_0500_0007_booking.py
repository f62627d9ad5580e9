"""stores, service types, capacity, maintenance booking

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 05:00:00
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

import backend.platform.db  # noqa: F401

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_type",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("duration_minutes", sa.Integer(), nullable=False),
        sa.Column("labour_minutes", sa.Integer(), nullable=False),
        sa.Column(
            "bay_type",
            sa.Enum("quick", "general", "body_paint", "wash", name="baytype", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_type")),
        sa.UniqueConstraint("code", name=op.f("uq_service_type_code")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "bay",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column(
            "bay_type",
            sa.Enum("quick", "general", "body_paint", "wash", name="baytype", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["store_id"], ["org_unit.id"], name=op.f("fk_bay_store_id_org_unit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bay")),
        sa.UniqueConstraint("store_id", "code", name=op.f("uq_bay_store_id_code")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "booking_capacity_template",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("block_start", sa.Time(), nullable=False),
        sa.Column("block_minutes", sa.Integer(), nullable=False),
        sa.Column(
            "bay_type",
            sa.Enum("quick", "general", "body_paint", "wash", name="baytype", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["store_id"], ["org_unit.id"], name=op.f("fk_booking_capacity_template_store_id_org_unit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_capacity_template")),
        sa.UniqueConstraint(
            "store_id",
            "weekday",
            "block_start",
            "bay_type",
            name=op.f("uq_booking_capacity_template_store_id_weekday_block_start_bay_type"),
        ),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "booking_day",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("labour_cap", sa.Integer(), nullable=True),
        sa.Column("labour_booked", sa.Integer(), nullable=False),
        sa.CheckConstraint("labour_booked >= 0", name=op.f("ck_booking_day_labour_not_negative")),
        sa.ForeignKeyConstraint(["store_id"], ["org_unit.id"], name=op.f("fk_booking_day_store_id_org_unit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_day")),
        sa.UniqueConstraint("store_id", "day", name=op.f("uq_booking_day_store_id_day")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "booking_slot",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("starts_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("ends_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column(
            "bay_type",
            sa.Enum("quick", "general", "body_paint", "wash", name="baytype", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("booked", sa.Integer(), nullable=False),
        sa.CheckConstraint("booked <= capacity", name=op.f("ck_booking_slot_booked_within_capacity")),
        sa.CheckConstraint("booked >= 0", name=op.f("ck_booking_slot_booked_not_negative")),
        sa.ForeignKeyConstraint(["store_id"], ["org_unit.id"], name=op.f("fk_booking_slot_store_id_org_unit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_slot")),
        sa.UniqueConstraint(
            "store_id", "bay_type", "starts_at", name=op.f("uq_booking_slot_store_id_bay_type_starts_at")
        ),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_booking_slot_store_day", "booking_slot", ["store_id", "day", "bay_type"], unique=False)
    op.create_table(
        "store_day_override",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.Column("opens", sa.Time(), nullable=True),
        sa.Column("closes", sa.Time(), nullable=True),
        sa.Column("note", sa.String(length=128), nullable=True),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["store_id"], ["org_unit.id"], name=op.f("fk_store_day_override_store_id_org_unit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_day_override")),
        sa.UniqueConstraint("store_id", "day", name=op.f("uq_store_day_override_store_id_day")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "store_hours",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("opens", sa.Time(), nullable=False),
        sa.Column("closes", sa.Time(), nullable=False),
        sa.Column("labour_cap_minutes", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["store_id"], ["org_unit.id"], name=op.f("fk_store_hours_store_id_org_unit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_hours")),
        sa.UniqueConstraint("store_id", "weekday", name=op.f("uq_store_hours_store_id_weekday")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "store_profile",
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("brands", sa.JSON(), nullable=False),
        sa.Column("bookable", sa.Boolean(), nullable=False),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["store_id"], ["org_unit.id"], name=op.f("fk_store_profile_store_id_org_unit")),
        sa.PrimaryKeyConstraint("store_id", name=op.f("pk_store_profile")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "booking",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("car_id", sa.Integer(), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("service_type_id", sa.Integer(), nullable=False),
        sa.Column("slot_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("starts_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("ends_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("labour_minutes", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "booked",
                "arrived",
                "in_service",
                "completed",
                "cancelled",
                "no_show",
                name="bookingstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("advisor_id", sa.Integer(), nullable=True),
        sa.Column("advisor_chosen", sa.Boolean(), nullable=False),
        sa.Column("bay_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("reschedule_count", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("scheduled_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("reminded_day_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("reminded_soon_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("cancel_reason", sa.String(length=255), nullable=True),
        sa.Column("cancelled_by", sa.String(length=16), nullable=True),
        sa.Column("cancelled_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("arrived_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("started_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("completed_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("no_show_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("mileage_km", sa.Integer(), nullable=True),
        sa.Column("work_done", sa.JSON(), nullable=True),
        sa.Column("checkin_nonce", sa.String(length=32), nullable=True),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["advisor_id"], ["staff.id"], name=op.f("fk_booking_advisor_id_staff")),
        sa.ForeignKeyConstraint(["bay_id"], ["bay.id"], name=op.f("fk_booking_bay_id_bay")),
        sa.ForeignKeyConstraint(["car_id"], ["car.id"], name=op.f("fk_booking_car_id_car")),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], name=op.f("fk_booking_customer_id_customer")),
        sa.ForeignKeyConstraint(
            ["service_type_id"], ["service_type.id"], name=op.f("fk_booking_service_type_id_service_type")
        ),
        sa.ForeignKeyConstraint(["slot_id"], ["booking_slot.id"], name=op.f("fk_booking_slot_id_booking_slot")),
        sa.ForeignKeyConstraint(["store_id"], ["org_unit.id"], name=op.f("fk_booking_store_id_org_unit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_booking_advisor_start", "booking", ["advisor_id", "starts_at"], unique=False)
    op.create_index("ix_booking_car_status", "booking", ["car_id", "status"], unique=False)
    op.create_index("ix_booking_customer", "booking", ["customer_id", "id"], unique=False)
    op.create_index("ix_booking_status_start", "booking", ["status", "starts_at"], unique=False)
    op.create_index("ix_booking_store_start", "booking", ["store_id", "starts_at"], unique=False)


def downgrade() -> None:
    op.drop_table("booking")
    op.drop_table("store_profile")
    op.drop_table("store_hours")
    op.drop_table("store_day_override")
    op.drop_table("booking_slot")
    op.drop_table("booking_day")
    op.drop_table("booking_capacity_template")
    op.drop_table("bay")
    op.drop_table("service_type")
