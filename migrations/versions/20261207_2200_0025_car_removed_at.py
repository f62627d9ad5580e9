"""car: an owner's removal of a car with history keeps the row (`removed_at`)

Bookings, leads and consultations refer to the car they were about, so a car with any of them
could not be deleted: its owner (who sold or scrapped it) could never take it off their list,
and its next owner could never bind its VIN. Such a car is now marked removed instead; its
VIN can be bound again.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 22:00:00
"""

import sqlalchemy as sa
from alembic import op

import backend.platform.db

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("car") as batch:
        batch.add_column(sa.Column("removed_at", backend.platform.db.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("car") as batch:
        batch.drop_column("removed_at")
