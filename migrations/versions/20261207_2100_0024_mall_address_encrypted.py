"""points mall: an order's shipping address encrypted at rest

`mall_order.address` kept the recipient's name, phone number and street address as plain JSON,
against the rule that phone numbers are encrypted at rest (and copied in full into every staff
list of redemptions). It becomes `address_encrypted`, the JSON sealed with the application's PII
key like every phone. Addresses already stored are sealed, then the plain column goes.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 21:00:00
"""

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def _vault() -> Any:
    """The application's phone vault: the running app's (`flask db upgrade`, the tests), else one
    built from the same settings the app would read."""
    from flask import current_app, has_app_context

    from backend.config import load_settings
    from backend.platform.pii import PhoneVault

    if has_app_context():
        return current_app.extensions["dealerloop.phone_vault"]
    settings = load_settings()
    return PhoneVault(settings["PII_ENCRYPTION_KEY"], settings["PII_INDEX_KEY"])


# Plain ALTERs, no batch: SQLite drops columns in place since 3.35.
def upgrade() -> None:
    op.add_column("mall_order", sa.Column("address_encrypted", sa.VARBINARY(length=2048), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, address FROM mall_order WHERE address IS NOT NULL")).all()
    if rows:
        phone_vault = _vault()
        for order_id, value in rows:
            address = json.loads(value) if isinstance(value, str | bytes) else value
            sealed = phone_vault.encrypt(json.dumps(address, ensure_ascii=False))
            bind.execute(
                sa.text("UPDATE mall_order SET address_encrypted = :enc WHERE id = :id"), {"enc": sealed, "id": order_id}
            )
    op.drop_column("mall_order", "address")


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text("SELECT id, address_encrypted FROM mall_order WHERE address_encrypted IS NOT NULL")
    ).all()
    op.add_column("mall_order", sa.Column("address", sa.JSON(), nullable=True))
    if rows:
        phone_vault = _vault()
        for order_id, blob in rows:
            bind.execute(
                sa.text("UPDATE mall_order SET address = :address WHERE id = :id"),
                {"address": phone_vault.decrypt(bytes(blob)), "id": order_id},
            )
    op.drop_column("mall_order", "address_encrypted")
