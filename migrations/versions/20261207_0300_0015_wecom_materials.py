"""wecom: materials for welcome messages and their media ids per corp

Welcome templates carried WeCom media ids, which expire three days after their upload: a
template with a picture stopped working after three days. Pictures, videos and files are now
kept as materials and uploaded again before their media ids expire.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 03:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import backend.platform.db

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wecom_material",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"), nullable=False),
        sa.Column("created_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["store_id"], ["org_unit.id"], name=op.f("fk_wecom_material_store_id_org_unit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wecom_material")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(op.f("ix_wecom_material_store_id"), "wecom_material", ["store_id"], unique=False)
    op.create_table(
        "wecom_media_upload",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("material_id", sa.Integer(), nullable=False),
        sa.Column("corp_id", sa.String(length=64), nullable=False),
        sa.Column("media_id", sa.String(length=255), nullable=False),
        sa.Column("uploaded_at", backend.platform.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["material_id"],
            ["wecom_material.id"],
            name=op.f("fk_wecom_media_upload_material_id_wecom_material"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wecom_media_upload")),
        sa.UniqueConstraint("material_id", "corp_id", name=op.f("uq_wecom_media_upload_material_id_corp_id")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )


def downgrade() -> None:
    op.drop_table("wecom_media_upload")
    op.drop_table("wecom_material")  # its indexes with it (MariaDB keeps the FK's index to the end)
