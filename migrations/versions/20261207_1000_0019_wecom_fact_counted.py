"""wecom: which channel facts count (`wecom_channel_fact.counted`)

A customer who adds a skip-verify QR code sends a half add and then, when the advisor confirms,
a full add: two `added` facts for one new friend, two slots of the daily cap. A customer who
deleted the advisor and was then removed by the advisor gave two `lost` facts. Every fact is
still recorded; `counted` marks the add that made the customer a friend and the first loss
after it. Rows from before count, as they did.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("wecom_channel_fact", sa.Column("counted", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    op.drop_column("wecom_channel_fact", "counted")
