"""wecom: a relation's remark and description encrypted at rest

Advisors type phone numbers (and plates, and family details) into a WeCom contact's remark and
description; those were stored as plain text. They become `remark_encrypted` /
`description_encrypted`, sealed with the phone vault's key like every phone at rest. The plain
values are dropped, not carried over: a migration has no access to the vault's key, and WeCom
holds the notes (the next edit_external_contact event of the relation writes them again).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 11:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


# Plain ALTERs, no batch: SQLite's batch mode copies the table, and dropping the old copy would
# cascade to wecom_friend_mobile (SQLite drops columns in place since 3.35).
def upgrade() -> None:
    op.add_column("wecom_friend", sa.Column("remark_encrypted", sa.VARBINARY(length=576), nullable=True))
    op.add_column("wecom_friend", sa.Column("description_encrypted", sa.VARBINARY(length=1088), nullable=True))
    op.drop_column("wecom_friend", "remark")
    op.drop_column("wecom_friend", "description")


def downgrade() -> None:
    op.add_column("wecom_friend", sa.Column("remark", sa.String(128), nullable=True))
    op.add_column("wecom_friend", sa.Column("description", sa.String(255), nullable=True))
    op.drop_column("wecom_friend", "remark_encrypted")
    op.drop_column("wecom_friend", "description_encrypted")
