"""wecom: one lock row per corp for the wholesale copies (tag library, directory)

Two tag-library syncs (two workers, two change_external_tag events) each read WeCom and then
wrote their copy: the one that read earlier could commit last and mark a newer tag deleted.
Syncs now read WeCom under this row's lock, and record when they began reading.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 09:00:00
"""

import sqlalchemy as sa
from alembic import op

import backend.platform.db

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wecom_sync_state",
        sa.Column("corp_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=32), nullable=False),
        sa.Column("fetched_at", backend.platform.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("corp_id", "subject", name=op.f("pk_wecom_sync_state")),
    )


def downgrade() -> None:
    op.drop_table("wecom_sync_state")
