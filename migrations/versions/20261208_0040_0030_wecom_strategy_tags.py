"""wecom: rule-group (规则组) tags in the tag library, told apart from corporate tags

`wecom_tag.kind` is "corp" (get_corp_tag_list) or "strategy" (a tag under a customer-contact
rule group, get_strategy_tag_list); `strategy_id` is its rule group's id (None for corporate
tags, and for a rule-group tag known only from a customer's tags, which do not name the rule
group); `listed` says whether WeCom lists the tag to this app. WeCom lists an app only the
rule-group tags the app created (doc 99544): one made in the admin console is learned from the
customers carrying it and from its callbacks, and cannot be marked by this app (doc 92697).

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-08 00:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("wecom_tag") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="corp"))
        batch.add_column(sa.Column("strategy_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("listed", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("wecom_tag") as batch:
        batch.drop_column("listed")
        batch.drop_column("strategy_id")
        batch.drop_column("kind")
