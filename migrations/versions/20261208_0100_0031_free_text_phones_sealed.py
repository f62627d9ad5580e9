"""free text: phone numbers typed into messages and notes masked, the text as typed sealed

An owner writing "我的电话 13812345678" into a consultation message, a lead's note, a booking
remark or a cancellation reason (a booking's, a mall order's) kept the number in clear in the
row, in every answer and in every copy (the conversation's last excerpt, notifications, the
timeline). Each such column now holds the text with its numbers masked, and a `<column>_sealed`
twin holds the text as typed, sealed with the phone vault's key, only when a number was found
(backend/platform/pii `seal_text`). Rows already stored are converted; the downgrade puts the
typed text back.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-08 01:00:00
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

# (table, free-text column): the columns backend/platform/pii's `seal_into` writes.
COLUMNS = (
    ("consult_message", "text"),
    ("lead", "note"),
    ("booking", "note"),
    ("booking", "cancel_reason"),
    ("mall_order", "cancel_reason"),
)
BATCH = 1000


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


def _rows(bind: Any, sql: str) -> Any:
    """Id-ordered batches, so a large table is not read into memory at once."""
    last = 0
    while True:
        rows = bind.execute(sa.text(sql), {"last": last, "n": BATCH}).all()
        if not rows:
            return
        yield from rows
        last = rows[-1][0]


# Plain ALTERs, no batch: SQLite adds and drops columns in place.
def upgrade() -> None:
    bind = op.get_bind()
    phone_vault = None
    for table, column in COLUMNS:
        op.add_column(table, sa.Column(f"{column}_sealed", sa.LargeBinary(), nullable=True))
        select = (
            f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL AND id > :last ORDER BY id LIMIT :n"  # noqa: S608 - names are constants above
        )
        for row_id, typed in _rows(bind, select):
            phone_vault = phone_vault or _vault()
            sealed = phone_vault.seal_text(typed)
            if sealed.sealed is not None:
                bind.execute(
                    sa.text(f"UPDATE {table} SET {column} = :shown, {column}_sealed = :sealed WHERE id = :id"),  # noqa: S608
                    {"shown": sealed.shown, "sealed": sealed.sealed, "id": row_id},
                )


def downgrade() -> None:
    bind = op.get_bind()
    phone_vault = None
    for table, column in COLUMNS:
        select = (
            f"SELECT id, {column}_sealed FROM {table} WHERE {column}_sealed IS NOT NULL AND id > :last "  # noqa: S608
            "ORDER BY id LIMIT :n"
        )
        for row_id, blob in _rows(bind, select):
            phone_vault = phone_vault or _vault()
            bind.execute(
                sa.text(f"UPDATE {table} SET {column} = :typed WHERE id = :id"),  # noqa: S608
                {"typed": phone_vault.decrypt(bytes(blob)), "id": row_id},
            )
        op.drop_column(table, f"{column}_sealed")
