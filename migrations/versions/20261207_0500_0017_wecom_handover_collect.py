"""wecom: a long unassigned list is read by a job; a handover counts what it left over

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 05:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("wecom_handover", sa.Column("collect_cursor", sa.String(length=255), nullable=True))
    op.add_column("wecom_handover", sa.Column("left_over", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("wecom_handover", schema=None) as batch_op:
        batch_op.alter_column("left_over", existing_type=sa.Integer(), server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("wecom_handover", schema=None) as batch_op:
        batch_op.drop_column("left_over")
        batch_op.drop_column("collect_cursor")
