"""segments, earning rules, campaigns, budgets and grants

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 05:00:00
"""

import sqlalchemy as sa
from alembic import op

import backend.platform.db

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "segment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("owner_unit_id", sa.Integer(), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["staff.id"], name=op.f("fk_segment_created_by_staff")),
        sa.ForeignKeyConstraint(["owner_unit_id"], ["org_unit.id"], name=op.f("fk_segment_owner_unit_id_org_unit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(op.f("ix_segment_owner_unit_id"), "segment", ["owner_unit_id"], unique=False)
    op.create_table(
        "campaign",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("goal", sa.String(length=255), nullable=True),
        sa.Column("owner_unit_id", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum("draft", "scheduled", "running", "ended", name="campaignstate", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("starts_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("ends_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("budget_points", sa.Integer(), nullable=True),
        sa.Column("budget_used", sa.Integer(), nullable=False),
        sa.Column("budget_exhausted_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("segment_id", sa.Integer(), nullable=True),
        sa.Column("wecom_channel_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("scheduled_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("started_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("ended_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["staff.id"], name=op.f("fk_campaign_created_by_staff")),
        sa.ForeignKeyConstraint(["owner_unit_id"], ["org_unit.id"], name=op.f("fk_campaign_owner_unit_id_org_unit")),
        sa.ForeignKeyConstraint(["segment_id"], ["segment.id"], name=op.f("fk_campaign_segment_id_segment")),
        sa.ForeignKeyConstraint(
            ["wecom_channel_id"], ["wecom_channel.id"], name=op.f("fk_campaign_wecom_channel_id_wecom_channel")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(op.f("ix_campaign_owner_unit_id"), "campaign", ["owner_unit_id"], unique=False)
    op.create_table(
        "campaign_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("ref_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], name=op.f("fk_campaign_link_campaign_id_campaign")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_link")),
        sa.UniqueConstraint("campaign_id", "kind", "ref_id", name=op.f("uq_campaign_link_campaign_id_kind_ref_id")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "earning_rule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("owner_unit_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("spend", "action", "multiplier", name="rulekind", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("points", sa.Integer(), nullable=True),
        sa.Column("points_per_yuan", sa.Integer(), nullable=True),
        sa.Column("rounding", sa.String(length=8), nullable=False),
        sa.Column("business_lines", sa.JSON(), nullable=False),
        sa.Column("exclude_business_types", sa.JSON(), nullable=False),
        sa.Column("multiplier_pct", sa.Integer(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("stop_processing", sa.Boolean(), nullable=False),
        sa.Column("valid_from", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("valid_to", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("store_ids", sa.JSON(), nullable=False),
        sa.Column("target_tiers", sa.JSON(), nullable=False),
        sa.Column("target_segment_id", sa.Integer(), nullable=True),
        sa.Column("cap_day", sa.Integer(), nullable=True),
        sa.Column("cap_week", sa.Integer(), nullable=True),
        sa.Column("cap_month", sa.Integer(), nullable=True),
        sa.Column("cap_total", sa.Integer(), nullable=True),
        sa.Column("budget_points", sa.Integer(), nullable=True),
        sa.Column("budget_used", sa.Integer(), nullable=False),
        sa.Column("budget_exhausted_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], name=op.f("fk_earning_rule_campaign_id_campaign")),
        sa.ForeignKeyConstraint(["created_by"], ["staff.id"], name=op.f("fk_earning_rule_created_by_staff")),
        sa.ForeignKeyConstraint(
            ["owner_unit_id"], ["org_unit.id"], name=op.f("fk_earning_rule_owner_unit_id_org_unit")
        ),
        sa.ForeignKeyConstraint(
            ["target_segment_id"], ["segment.id"], name=op.f("fk_earning_rule_target_segment_id_segment")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_earning_rule")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(op.f("ix_earning_rule_campaign_id"), "earning_rule", ["campaign_id"], unique=False)
    op.create_index(op.f("ix_earning_rule_owner_unit_id"), "earning_rule", ["owner_unit_id"], unique=False)
    op.create_index("ix_earning_rule_trigger_active", "earning_rule", ["trigger", "active"], unique=False)
    op.create_table(
        "campaign_grant",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("ref", sa.String(length=128), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("ledger_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("store_id", sa.Integer(), nullable=True),
        sa.Column("amount_fen", sa.Integer(), nullable=True),
        sa.Column("occurred_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], name=op.f("fk_campaign_grant_campaign_id_campaign")),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], name=op.f("fk_campaign_grant_customer_id_customer")),
        sa.ForeignKeyConstraint(
            ["ledger_id"], ["points_ledger.id"], name=op.f("fk_campaign_grant_ledger_id_points_ledger")
        ),
        sa.ForeignKeyConstraint(["rule_id"], ["earning_rule.id"], name=op.f("fk_campaign_grant_rule_id_earning_rule")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_grant")),
        sa.UniqueConstraint("rule_id", "ref", name=op.f("uq_campaign_grant_rule_id_ref")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(
        "ix_campaign_grant_campaign_customer", "campaign_grant", ["campaign_id", "customer_id"], unique=False
    )
    op.create_index(op.f("ix_campaign_grant_customer_id"), "campaign_grant", ["customer_id"], unique=False)
    op.create_table(
        "earning_counter",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("period_key", sa.String(length=16), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["rule_id"], ["earning_rule.id"], name=op.f("fk_earning_counter_rule_id_earning_rule")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_earning_counter")),
        sa.UniqueConstraint(
            "rule_id",
            "customer_id",
            "period",
            "period_key",
            name=op.f("uq_earning_counter_rule_id_customer_id_period_period_key"),
        ),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )


def downgrade() -> None:
    op.drop_table("earning_counter")
    op.drop_table("campaign_grant")
    op.drop_table("earning_rule")
    op.drop_table("campaign_link")
    op.drop_table("campaign")
    op.drop_table("segment")
