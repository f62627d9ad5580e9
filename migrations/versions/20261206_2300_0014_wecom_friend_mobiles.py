"""wecom: the numbers advisors note on WeCom contacts, encrypted at rest

`wecom_friend.remark_mobiles` kept WeCom's `remark_mobiles` as plaintext JSON, against the rule
that phone numbers are encrypted at rest. They move to `wecom_friend_mobile`, one row per
number, encrypted with the application's PII key and, for mainland mobiles, with the blind index
that a staff phone search matches. Numbers already stored are moved, then the column goes.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 23:00:00
"""

import json
from typing import Any

import sqlalchemy as sa
from alembic import op


revision = "0014"
down_revision = "0013"
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


def _numbers(value: Any) -> list[str]:
    listed = json.loads(value) if isinstance(value, str | bytes) else value
    return [str(n) for n in listed or [] if str(n or "").strip()]


def upgrade() -> None:
    op.create_table(
        "wecom_friend_mobile",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("friend_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("phone_encrypted", sa.VARBINARY(length=128), nullable=False),
        sa.Column("phone_index", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["friend_id"],
            ["wecom_friend.id"],
            name=op.f("fk_wecom_friend_mobile_friend_id_wecom_friend"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wecom_friend_mobile")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(op.f("ix_wecom_friend_mobile_friend_id"), "wecom_friend_mobile", ["friend_id"], unique=False)
    op.create_index(op.f("ix_wecom_friend_mobile_phone_index"), "wecom_friend_mobile", ["phone_index"], unique=False)

    # No ORM or service code, which later revisions may change: the vault's rule for a noted
    # number (mainland mobiles normalised and indexed, anything else as typed), once per relation,
    # as backend.wecom.service.set_friend_mobiles applies it.
    bind = op.get_bind()
    noted = [
        (friend_id, _numbers(value))
        for friend_id, value in bind.execute(sa.text("SELECT id, remark_mobiles FROM wecom_friend")).all()
    ]
    noted = [(friend_id, numbers) for friend_id, numbers in noted if numbers]
    if noted:
        phone_vault = _vault()
        insert = sa.text(
            "INSERT INTO wecom_friend_mobile (friend_id, phone_encrypted, phone_index) VALUES (:friend, :enc, :idx)"
        )
        for friend_id, numbers in noted:
            wanted: dict[str, str | None] = {}
            for typed in numbers:
                number, index = phone_vault.noted(typed.strip()[:64])
                wanted.setdefault(number, index)
            for number, index in wanted.items():
                bind.execute(insert, {"friend": friend_id, "enc": phone_vault.encrypt(number), "idx": index})
    # A plain ALTER TABLE, on SQLite too: batch mode's table copy would drop `wecom_friend`, and
    # with it (ON DELETE CASCADE) the rows just written.
    op.drop_column("wecom_friend", "remark_mobiles")


def downgrade() -> None:
    # Read first: on SQLite the NOT NULL change below copies `wecom_friend`, which cascades.
    bind = op.get_bind()
    by_friend: dict[int, list[str]] = {}
    rows = bind.execute(sa.text("SELECT friend_id, phone_encrypted FROM wecom_friend_mobile ORDER BY id")).all()
    if rows:
        phone_vault = _vault()
        for friend_id, blob in rows:
            by_friend.setdefault(friend_id, []).append(phone_vault.decrypt(bytes(blob)))
    op.add_column("wecom_friend", sa.Column("remark_mobiles", sa.JSON(), nullable=True))
    bind.execute(sa.text("UPDATE wecom_friend SET remark_mobiles = '[]'"))
    for friend_id, numbers in by_friend.items():
        bind.execute(
            sa.text("UPDATE wecom_friend SET remark_mobiles = :numbers WHERE id = :id"),
            {"numbers": json.dumps(numbers, ensure_ascii=False), "id": friend_id},
        )
    with op.batch_alter_table("wecom_friend", schema=None) as batch_op:
        batch_op.alter_column("remark_mobiles", existing_type=sa.JSON(), nullable=False)
    op.drop_table("wecom_friend_mobile")  # its indexes with it (MariaDB keeps the FK's index to the end)
