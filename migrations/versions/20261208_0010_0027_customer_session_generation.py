"""customer: `session_generation`, so that reversing a merge ends the access tokens it let out

An owner who logged in while merged into another customer got access tokens acting as the
survivor; reversing the merge revoked their refresh tokens only, and the access tokens went on
acting as the survivor until their TTL ran out. Owner access tokens now carry the generation of
their subject, raised by the reversal; an older one is refused (401 auth.session_revoked).

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-08 00:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


# Plain ALTERs, not a batch: on SQLite a batch would copy `customer` and drop the original,
# which every other table refers to (the foreign keys refuse it once there is data).


def upgrade() -> None:
    op.add_column("customer", sa.Column("session_generation", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    op.drop_column("customer", "session_generation")
