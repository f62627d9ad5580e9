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


def upgrade() -> None:
    op.add_column("wecom_handover", sa.Column("collect_cursor", sa.String(length=255), nullable=True))
    op.add_column("wecom_handover", sa.Column("collect_pages", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("wecom_handover", sa.Column("collected_at", backend.platform.db.UTCDateTime(), nullable=True))
    op.add_column("wecom_handover", sa.Column("left_over", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("wecom_handover", schema=None) as batch_op:
        batch_op.alter_column("collect_pages", existing_type=sa.Integer(), server_default=None)
        batch_op.alter_column("left_over", existing_type=sa.Integer(), server_default=None)


def downgrade() -> None:
    bind = op.get_bind()
    # The older code knows neither status: a handover still reading its list goes on to submit
    # what it has, and left-over customers are simply not in it.
    bind.execute(sa.text("UPDATE wecom_handover SET status = 'submitting' WHERE status = 'collecting'"))
    bind.execute(sa.text("DELETE FROM wecom_handover_item WHERE status = 'left_over'"))
    with op.batch_alter_table("wecom_handover", schema=None) as batch_op:
        batch_op.drop_column("left_over")
        batch_op.drop_column("collected_at")
        batch_op.drop_column("collect_pages")
        batch_op.drop_column("collect_cursor")
