"""wecom: whether a channel's contact way is single-person (type 1)

A single-person contact way takes exactly one user and WeCom cannot change its type, so an
update giving it several advisors or a daily cap was refused by WeCom as a 502. The type is now
kept. For existing channels it is unknown (their advisors may have changed since creation):
NULL, and the first update asks WeCom (get_contact_way) and keeps the answer.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 04:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("wecom_channel", sa.Column("single_person", sa.Boolean(), nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE, on SQLite too: batch mode copies the table, which the friends'
    # foreign keys refuse.
    op.drop_column("wecom_channel", "single_person")
