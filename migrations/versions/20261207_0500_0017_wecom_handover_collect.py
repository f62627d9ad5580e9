"""wecom: a long unassigned list is read by a job; a handover counts what it left over

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 05:00:00
"""

import sqlalchemy as sa
from alembic import op

import backend.platform.db

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


# Plain ALTER TABLEs, on SQLite too: batch mode's table copy would drop `wecom_handover`, and
# with it (ON DELETE CASCADE) every handover item. The integer columns keep their server default
# of 0 for the same reason.


def upgrade() -> None:
    op.add_column("wecom_handover", sa.Column("collect_cursor", sa.Text(), nullable=True))
    op.add_column("wecom_handover", sa.Column("collect_pages", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("wecom_handover", sa.Column("collected_at", backend.platform.db.UTCDateTime(), nullable=True))
    op.add_column("wecom_handover", sa.Column("left_over", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    bind = op.get_bind()
    # The older code knows neither status: a handover still reading its list goes on to submit
    # what it has, and left-over customers are simply not in it.
    bind.execute(sa.text("UPDATE wecom_handover SET status = 'submitting' WHERE status = 'collecting'"))
    bind.execute(sa.text("DELETE FROM wecom_handover_item WHERE status = 'left_over'"))
    for column in ("left_over", "collected_at", "collect_pages", "collect_cursor"):
        op.drop_column("wecom_handover", column)
