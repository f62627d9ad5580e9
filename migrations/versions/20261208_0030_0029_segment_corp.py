"""segment: the WeCom corp its tag filters belong to (`corp_id`)

A segment's tag filters named raw tag ids and matched them on any corp's friend relations, so a
marketer of one corp could count and select customers by another corp's tags. A segment now
belongs to the corp of whoever set its filters. Existing segments take their creator's corp;
one without a creator keeps NULL (its tags match in any corp, as before).

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-08 00:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("segment") as batch:
        batch.add_column(sa.Column("corp_id", sa.String(64), nullable=True))
    op.execute("UPDATE segment SET corp_id = (SELECT staff.corp_id FROM staff WHERE staff.id = segment.created_by)")


def downgrade() -> None:
    with op.batch_alter_table("segment") as batch:
        batch.drop_column("corp_id")
