"""booking: a no-show undone by staff is waived, and the sweep leaves it alone

`booking.no_show_waived_at`: when staff undid the booking's no-show. The automatic no-show sweep
skips such a booking; before, it marked it a no-show again on its next run (the owner blocked
again by the no-show rule, or the car's check-in refused a minute after the undo).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 14:00:00
"""

import sqlalchemy as sa
from alembic import op

import backend.platform.db

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("booking") as batch:
        batch.add_column(sa.Column("no_show_waived_at", backend.platform.db.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("booking") as batch:
        batch.drop_column("no_show_waived_at")
