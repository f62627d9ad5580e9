"""wecom: tag groups keep WeCom's order; who carries a tag is indexed

`wecom_tag.group_order` is the group's `order` from get_corp_tag_list (larger first, as WeCom
lists groups; the tag's own `order` was already kept). `wecom_friend_tag.tag_id` gets an index:
a tag deleted in WeCom is taken off every relation carrying it, and segments filter by tag.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 12:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("wecom_tag", sa.Column("group_order", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_wecom_friend_tag_tag_id", "wecom_friend_tag", ["tag_id"])


def downgrade() -> None:
    op.drop_index("ix_wecom_friend_tag_tag_id", table_name="wecom_friend_tag")
    op.drop_column("wecom_tag", "group_order")
