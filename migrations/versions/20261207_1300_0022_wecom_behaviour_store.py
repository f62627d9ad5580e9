"""wecom: an advisor's behaviour figures keep the store they were earned at

`wecom_behaviour_day.store_id`: the advisor's store when the day was first stored. A store
manager keeps seeing the days an advisor worked for them after the advisor moves, and the new
store's manager does not get them. Existing rows take the advisor's store now (the best that is
known).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 13:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("wecom_behaviour_day") as batch:
        batch.add_column(sa.Column("store_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_wecom_behaviour_day_store_id_org_unit", "org_unit", ["store_id"], ["id"])
        batch.create_index("ix_wecom_behaviour_day_store_date", ["store_id", "stat_date"])
    op.execute(
        "UPDATE wecom_behaviour_day SET store_id = "
        "(SELECT staff.org_unit_id FROM staff WHERE staff.id = wecom_behaviour_day.staff_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("wecom_behaviour_day") as batch:
        batch.drop_constraint("fk_wecom_behaviour_day_store_id_org_unit", type_="foreignkey")
        batch.drop_index("ix_wecom_behaviour_day_store_date")
        batch.drop_column("store_id")
