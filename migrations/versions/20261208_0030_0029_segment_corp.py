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


# Plain ALTERs, not a batch: on SQLite a batch drop copies `segment` and drops the original,
# which campaigns and earning rules refer to (the foreign keys refuse it once there is data).
# SQLite has had DROP COLUMN since 3.35; migration 0027 makes the same choice.


def upgrade() -> None:
    op.add_column("segment", sa.Column("corp_id", sa.String(64), nullable=True))
    op.execute("UPDATE segment SET corp_id = (SELECT staff.corp_id FROM staff WHERE staff.id = segment.created_by)")


def downgrade() -> None:
    op.drop_column("segment", "corp_id")
