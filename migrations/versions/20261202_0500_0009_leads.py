"""leads and vehicle listings

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 05:00:00
"""

import sqlalchemy as sa
from alembic import op

import backend.platform.db

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lead_route_cursor",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["store_id"], ["org_unit.id"], name=op.f("fk_lead_route_cursor_store_id_org_unit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_route_cursor")),
        sa.UniqueConstraint("store_id", "role", name=op.f("uq_lead_route_cursor_store_id_role")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "vehicle_listing",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column(
            "condition", sa.Enum("new", "used", name="listingcondition", native_enum=False, length=8), nullable=False
        ),
        sa.Column("title", sa.String(length=128), nullable=False),
        sa.Column("brand", sa.String(length=64), nullable=False),
        sa.Column("series", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("year", sa.Integer(), nullable=True),
        sa.Column("mileage_km", sa.Integer(), nullable=False),
        sa.Column("price_fen", sa.Integer(), nullable=False),
        sa.Column("photos", sa.JSON(), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=True),
        sa.Column(
            "status",
            sa.Enum("on_sale", "reserved", "sold", "withdrawn", name="listingstatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("created_by_staff_id", sa.Integer(), nullable=True),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_staff_id"], ["staff.id"], name=op.f("fk_vehicle_listing_created_by_staff_id_staff")
        ),
        sa.ForeignKeyConstraint(["store_id"], ["org_unit.id"], name=op.f("fk_vehicle_listing_store_id_org_unit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vehicle_listing")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_vehicle_listing_store_status", "vehicle_listing", ["store_id", "status"], unique=False)
    op.create_table(
        "lead",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column(
            "type",
            sa.Enum(
                "new_car",
                "used_car",
                "trade_in",
                "loan",
                "insurance",
                "accident",
                name="leadtype",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum("new", "contacted", "appointment", "won", "lost", name="leadstatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column(
            "priority", sa.Enum("normal", "high", name="leadpriority", native_enum=False, length=8), nullable=False
        ),
        sa.Column("advisor_id", sa.Integer(), nullable=True),
        sa.Column("routed_role", sa.String(length=32), nullable=False),
        sa.Column("routed_by", sa.String(length=24), nullable=False),
        sa.Column("car_id", sa.Integer(), nullable=True),
        sa.Column("listing_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("photos", sa.JSON(), nullable=False),
        sa.Column("location", sa.JSON(), nullable=True),
        sa.Column("injuries", sa.Boolean(), nullable=True),
        sa.Column("drivable", sa.Boolean(), nullable=True),
        sa.Column("tow_requested", sa.Boolean(), nullable=False),
        sa.Column("repair_booking_requested", sa.Boolean(), nullable=False),
        sa.Column("preferred_time", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("contact_due_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("contacted_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("appointment_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("closed_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("lost_reason", sa.String(length=255), nullable=True),
        sa.Column("escalated_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["advisor_id"], ["staff.id"], name=op.f("fk_lead_advisor_id_staff")),
        sa.ForeignKeyConstraint(["car_id"], ["car.id"], name=op.f("fk_lead_car_id_car")),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], name=op.f("fk_lead_customer_id_customer")),
        sa.ForeignKeyConstraint(
            ["listing_id"], ["vehicle_listing.id"], name=op.f("fk_lead_listing_id_vehicle_listing")
        ),
        sa.ForeignKeyConstraint(["store_id"], ["org_unit.id"], name=op.f("fk_lead_store_id_org_unit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_lead_advisor_status", "lead", ["advisor_id", "status", "id"], unique=False)
    op.create_index("ix_lead_customer_type", "lead", ["customer_id", "type", "created_at"], unique=False)
    op.create_index("ix_lead_sla", "lead", ["status", "escalated_at", "contact_due_at"], unique=False)
    op.create_index("ix_lead_store_status", "lead", ["store_id", "status", "id"], unique=False)
    # ### end Alembic commands ###


def downgrade() -> None:
    op.drop_table("lead")
    op.drop_table("vehicle_listing")
    op.drop_table("lead_route_cursor")
    # ### end Alembic commands ###
