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


def downgrade() -> None:
    op.drop_index(op.f("ix_segment_owner_unit_id"), table_name="segment")
    op.drop_table("segment")
