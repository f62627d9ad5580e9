"""refresh_token: an index on the subject, for ending a customer's sessions

Reversing a customer merge revokes the survivor's owner sessions opened since the merge
(audience, subject, issued since): without an index on the subject that UPDATE read the whole
refresh_token table, which grows with every login and refresh.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-08 00:00:00
"""

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_refresh_token_subject", "refresh_token", ["subject_id", "audience", "issued_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_refresh_token_subject", table_name="refresh_token")
