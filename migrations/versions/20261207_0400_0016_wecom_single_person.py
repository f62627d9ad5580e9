"""wecom: whether a channel's contact way is single-person (type 1)

A single-person contact way takes exactly one user and WeCom cannot change its type, so an
update giving it several advisors or a daily cap was refused by WeCom as a 502. The type is now
kept; for existing channels it is what creation decided: one advisor and no daily cap.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 04:00:00
"""

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _users(value: Any) -> list:
    listed = json.loads(value) if isinstance(value, str | bytes) else value
    return list(listed or [])


def upgrade() -> None:
    op.add_column(
        "wecom_channel", sa.Column("single_person", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, userids, daily_cap FROM wecom_channel")).all()
    single = [channel_id for channel_id, userids, cap in rows if len(_users(userids)) == 1 and cap is None]
    for channel_id in single:
        bind.execute(sa.text("UPDATE wecom_channel SET single_person = :yes WHERE id = :id"), {"yes": True, "id": channel_id})
    with op.batch_alter_table("wecom_channel", schema=None) as batch_op:
        batch_op.alter_column("single_person", existing_type=sa.Boolean(), server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("wecom_channel", schema=None) as batch_op:
        batch_op.drop_column("single_person")
