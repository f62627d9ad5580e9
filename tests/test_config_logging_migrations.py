"""Settings, structured logging with masking, migrations without drift, PII encryption."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from backend.config import ConfigError, load_settings
from backend.platform.logs import ContextFilter, JsonFormatter, mask_phone, mask_text, request_id_var
from backend.platform.pii import PhoneInvalid, PhoneVault, normalize_phone


def test_production_refuses_to_start_without_secrets() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"DEALERLOOP_ENV": "production", "SECRET_KEY": "s" * 40})
    message = str(err.value)
    for name in ("DATABASE_URL", "PII_ENCRYPTION_KEY", "WECHAT_APP_SECRET", "WECOM_SECRET", "WECHATPAY_APIV3_KEY"):
        assert name in message
    assert "SECRET_KEY," not in message


def test_flask_env_production_is_production_too() -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_settings({"FLASK_ENV": "production"})


def test_create_app_stops_on_missing_production_settings() -> None:
    from backend import create_app

    with pytest.raises(ConfigError, match="missing settings"):
        create_app(environ={"DEALERLOOP_ENV": "production"})


@pytest.mark.parametrize(
    "url",
    ["mysql+pymysql://app:pw@10.0.3.7:3306/dealerloop", "mysql+pymysql://app@db.internal/dealerloop"],
)
def test_development_defaults_are_refused_for_a_database_elsewhere(url: str) -> None:
    """A deployment that forgot DEALERLOOP_ENV=production would have run with the public dev
    secret key (tokens anyone can mint) and the sandbox (WeCom login codes for any userid)."""
    with pytest.raises(ConfigError, match="another host") as err:
        load_settings({"DATABASE_URL": url})
    assert "SECRET_KEY" in str(err.value) and "SANDBOX_ENABLED" in str(err.value)
    named = {
        "DATABASE_URL": url,
        "SECRET_KEY": "k" * 40,
        "PII_ENCRYPTION_KEY": load_settings({})["PII_ENCRYPTION_KEY"],
        "PII_INDEX_KEY": load_settings({})["PII_INDEX_KEY"],
    }
    with pytest.raises(ConfigError, match="SANDBOX_ENABLED"):
        load_settings(named)
    assert load_settings({**named, "SANDBOX_ENABLED": "0"})["SANDBOX_ENABLED"] is False


@pytest.mark.parametrize(
    "url",
    [
        "mysql+pymysql://root@127.0.0.1:3306/test",
        "mysql+pymysql://root@localhost/test",
        "mysql+pymysql://root@[::1]:3306/test",
        "mysql+pymysql://root@/test?unix_socket=/run/mysqld/mysqld.sock",
        "sqlite:///:memory:",
    ],
)
def test_development_defaults_apply_to_a_database_on_this_machine(url: str) -> None:
    cfg = load_settings({"DATABASE_URL": url})
    assert cfg["SANDBOX_ENABLED"] is True and cfg["SECRET_KEY"].startswith("dev-only")


def test_development_has_embedded_defaults() -> None:
    cfg = load_settings({})
    assert cfg["DATABASE_URL"].startswith("sqlite:///") and cfg["DATABASE_URL"].endswith("instance/dealerloop.db")
    assert cfg["REDIS_URL"] == "" and cfg["SANDBOX_ENABLED"] is True
    assert load_settings({"SANDBOX_ENABLED": "0"})["SANDBOX_ENABLED"] is False
    with pytest.raises(ConfigError):
        load_settings({"SANDBOX_ENABLED": "maybe"})


def test_bad_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="32 bytes"):
        load_settings({"PII_ENCRYPTION_KEY": "c2hvcnQ="})
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_settings({"SECRET_KEY": "short"})


def test_masking() -> None:
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("+86 138 1234 5678") == "138****5678"
    text = "phone=13812345678 url=/x?access_token=ABCDEF&code=xyz Authorization: Bearer eyJhbGciOi.abc.def"
    masked = mask_text(text)
    assert "13812345678" not in masked and "138****5678" in masked
    assert "ABCDEF" not in masked and "xyz" not in masked and "eyJhbGciOi" not in masked
    for shape in ("138-1234-5678", "138 1234 5678", "+86 138 1234 5678", "(138)12345678", "+8613812345678"):
        out = mask_text(f"call {shape} now")
        assert "1234" not in out.replace("****", "") and "5678" in out, (shape, out)


def test_json_log_lines_carry_ids_and_mask() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("dealerloop.test_json")
    logger.addHandler(handler)
    logger.propagate = False
    token = request_id_var.set("req-123")
    try:
        logger.warning("customer %s called from %s", 42, "13987654321")
    finally:
        request_id_var.reset(token)
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["request_id"] == "req-123" and line["level"] == "WARNING"
    assert line["message"] == "customer 42 called from 139****4321"


def test_request_logs_are_masked(client: Any, caplog: Any, sandbox_reset: Any) -> None:
    caplog.set_level(logging.INFO)
    code = sandbox_reset.state.issue_login_code("o-log")
    client.post("/api/app/v1/auth/login", json={"code": code})
    assert code not in caplog.text  # wechatpy/urllib3 debug lines would carry js_code=...


def test_phone_vault_round_trip_and_blind_index() -> None:
    import base64
    import os

    vault = PhoneVault(base64.b64encode(os.urandom(32)).decode(), base64.b64encode(os.urandom(32)).decode())
    a, b = vault.encrypt("13812345678"), vault.encrypt("13812345678")
    assert a != b  # random nonce
    assert vault.decrypt(a) == vault.decrypt(b) == "13812345678"
    assert vault.blind_index("13812345678") == vault.blind_index("+86-138-1234-5678")
    assert normalize_phone("008613812345678") == "13812345678"
    with pytest.raises(PhoneInvalid):
        normalize_phone("12345")
    tampered = a[:-1] + bytes([a[-1] ^ 1])
    with pytest.raises(Exception):  # noqa: B017 - cryptography's InvalidTag
        vault.decrypt(tampered)


def test_models_and_migrations_do_not_drift(app: Any, db_session: Any) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from backend.models import metadata

    # Server defaults too: a column a migration gave one and the model not is created without it
    # by a schema built from the models. (Boolean ones are written `text("1")` in the models, as
    # MariaDB reports them; `true()` would compare as different there.)
    ctx = MigrationContext.configure(
        db_session.connection(), opts={"compare_type": True, "compare_server_default": True}
    )
    assert compare_metadata(ctx, metadata) == []


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def scratch_database_url(request: Any, tmp_path: Any) -> Any:
    """An empty database of its own (a migration test walks the revisions on it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    import os

    import pymysql

    from tests.conftest import MARIADB_URL

    name = f"dealerloop_test_{os.getpid()}_scratch"
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        yield f"{MARIADB_URL}{name}?charset=utf8mb4"
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


def test_migrations_downgrade_and_upgrade_cleanly(scratch_database_url: str) -> None:
    from sqlalchemy import inspect

    from backend.platform.db import make_engine
    from backend.platform.migrate import current_revision, downgrade, head_revision, upgrade

    engine = make_engine(scratch_database_url)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert "touchpoint" in inspect(engine).get_table_names()
    engine.dispose()


def test_noted_wecom_numbers_move_out_of_clear_text_and_back(scratch_database_url: str) -> None:
    """Revision 0014 moves `wecom_friend.remark_mobiles` (plaintext JSON) into encrypted rows;
    its downgrade puts them back."""
    from flask import current_app, has_app_context
    from sqlalchemy import inspect, text

    from backend.platform.db import make_engine
    from backend.platform.migrate import downgrade, upgrade

    if has_app_context():  # the vault the migration uses
        vault = current_app.extensions["dealerloop.phone_vault"]
    else:
        settings = load_settings()
        vault = PhoneVault(settings["PII_ENCRYPTION_KEY"], settings["PII_INDEX_KEY"])
    engine = make_engine(scratch_database_url)
    upgrade(engine, "0013")
    at = "2026-12-06 00:00:00"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO customer (id, gender, lifecycle_stage, tier, created_at, updated_at) "
                "VALUES (1, 'unknown', 'lead', 'normal', :at, :at)"
            ),
            {"at": at},
        )
        for friend_id, numbers in ((7, ["138 0013 8000", "021-5555 1234", "+8613800138000"]), (8, [])):
            conn.execute(
                text(
                    "INSERT INTO wecom_friend (id, corp_id, userid, external_userid, customer_id, status, "
                    "remark_mobiles, version, created_at, updated_at) "
                    "VALUES (:id, 'ww1', 'adv', :ext, 1, 'active', :numbers, 0, :at, :at)"
                ),
                {"id": friend_id, "ext": f"wm{friend_id}", "numbers": json.dumps(numbers), "at": at},
            )

    upgrade(engine)
    assert "remark_mobiles" not in {c["name"] for c in inspect(engine).get_columns("wecom_friend")}
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT friend_id, phone_encrypted, phone_index FROM wecom_friend_mobile ORDER BY id"))
        moved = [(friend_id, vault.decrypt(bytes(blob)), index) for friend_id, blob, index in rows]
    assert moved == [(7, "13800138000", vault.blind_index("13800138000")), (7, "021-5555 1234", None)]

    downgrade(engine, "0013")
    with engine.connect() as conn:
        back = dict(conn.execute(text("SELECT id, remark_mobiles FROM wecom_friend")).all())
    assert {k: json.loads(v) for k, v in back.items()} == {7: ["13800138000", "021-5555 1234"], 8: []}
    engine.dispose()


def test_mall_shipping_addresses_are_sealed_and_back(scratch_database_url: str) -> None:
    """Revision 0024 seals `mall_order.address` (plaintext JSON with the recipient's phone) into
    `address_encrypted`; its downgrade puts it back."""
    from flask import current_app, has_app_context
    from sqlalchemy import inspect, text

    from backend.platform.db import make_engine
    from backend.platform.migrate import downgrade, upgrade

    if has_app_context():  # the vault the migration uses
        vault = current_app.extensions["dealerloop.phone_vault"]
    else:
        settings = load_settings()
        vault = PhoneVault(settings["PII_ENCRYPTION_KEY"], settings["PII_INDEX_KEY"])
    address = {"name": "张三", "phone": "13800138000", "region": "上海", "detail": "世纪大道1号"}
    engine = make_engine(scratch_database_url)
    upgrade(engine, "0023")
    at = "2026-12-07 00:00:00"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO customer (id, gender, lifecycle_stage, tier, created_at, updated_at) "
                "VALUES (1, 'unknown', 'lead', 'normal', :at, :at)"
            ),
            {"at": at},
        )
        conn.execute(
            text(
                "INSERT INTO mall_item (id, name, kind, points_price, cash_fen, stock, sold, per_order_limit, "
                "limit_period, active, created_at, updated_at) "
                "VALUES (1, 'x', 'physical', 1, 0, 1, 0, 1, 'none', 1, :at, :at)"
            ),
            {"at": at},
        )
        for order_id, value in ((1, json.dumps(address, ensure_ascii=False)), (2, None)):
            conn.execute(
                text(
                    "INSERT INTO mall_order (id, order_no, customer_id, item_id, item_kind, quantity, points_total, "
                    "cash_fen_total, state, address, created_at, updated_at) "
                    "VALUES (:id, :no, 1, 1, 'physical', 1, 1, 0, 'placed', :address, :at, :at)"
                ),
                {"id": order_id, "no": f"M{order_id}", "address": value, "at": at},
            )

    upgrade(engine)
    assert "address" not in {c["name"] for c in inspect(engine).get_columns("mall_order")}
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT id, address_encrypted FROM mall_order")).all())
    assert json.loads(vault.decrypt(bytes(rows[1]))) == address and rows[2] is None

    downgrade(engine, "0023")
    with engine.connect() as conn:
        back = dict(conn.execute(text("SELECT id, address FROM mall_order")).all())
    assert {k: json.loads(v) if v is not None else None for k, v in back.items()} == {1: address, 2: None}
    engine.dispose()


def test_segment_corp_goes_and_comes_back_while_a_campaign_targets_the_segment(scratch_database_url: str) -> None:
    """Revision 0029 adds `segment.corp_id`; its downgrade must not rebuild `segment` (on SQLite
    a batch copy drops the table, which a campaign's foreign key refuses once one points at it)."""
    from sqlalchemy import inspect, text

    from backend.platform.db import make_engine
    from backend.platform.migrate import current_revision, downgrade, upgrade

    engine = make_engine(scratch_database_url)
    upgrade(engine, "0029")
    at = "2026-12-08 00:00:00"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO org_unit (id, kind, code, name, path, created_at, updated_at) "
                "VALUES (1, 'group', 'g', 'g', '/1/', :at, :at)"
            ),
            {"at": at},
        )
        conn.execute(
            text(
                "INSERT INTO segment (id, name, owner_unit_id, corp_id, filters, archived, created_at, updated_at) "
                "VALUES (1, 's', 1, 'ww1', '{}', 0, :at, :at)"
            ),
            {"at": at},
        )
        conn.execute(
            text(
                "INSERT INTO campaign (id, name, owner_unit_id, state, starts_at, ends_at, budget_used, segment_id, "
                "created_at, updated_at) VALUES (1, 'c', 1, 'draft', :at, :at, 0, 1, :at, :at)"
            ),
            {"at": at},
        )

    downgrade(engine, "0028")
    assert "corp_id" not in {c["name"] for c in inspect(engine).get_columns("segment")}
    upgrade(engine, "0029")
    assert current_revision(engine) == "0029"
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT c.id, s.id, s.corp_id FROM campaign c JOIN segment s ON s.id = c.segment_id"))
        assert kept.all() == [(1, 1, None)]  # the segment and its campaign stay; the corp was dropped with the column
    engine.dispose()


def test_numbers_typed_into_free_text_are_sealed_and_back(scratch_database_url: str) -> None:
    """Revision 0031 masks the phone numbers in stored free text (consultation messages here; lead
    and booking notes go through the same loop) and seals the text as typed alongside; text
    without a number is left alone; its downgrade puts the typed text back."""
    from flask import current_app, has_app_context
    from sqlalchemy import inspect, text

    from backend.platform.db import make_engine
    from backend.platform.migrate import downgrade, upgrade

    if has_app_context():  # the vault the migration uses
        vault = current_app.extensions["dealerloop.phone_vault"]
    else:
        settings = load_settings()
        vault = PhoneVault(settings["PII_ENCRYPTION_KEY"], settings["PII_INDEX_KEY"])
    typed = {1: "我的电话 0086-138-1234-5678，下午回我", 2: "保养多少钱？", 3: None}
    engine = make_engine(scratch_database_url)
    upgrade(engine, "0030")
    at = "2026-12-07 00:00:00"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO customer (id, gender, lifecycle_stage, tier, created_at, updated_at) "
                "VALUES (1, 'unknown', 'lead', 'normal', :at, :at)"
            ),
            {"at": at},
        )
        conn.execute(
            text(
                "INSERT INTO org_unit (id, kind, code, name, path, created_at, updated_at) "
                "VALUES (1, 'store', 's1', '门店', '/1/', :at, :at)"
            ),
            {"at": at},
        )
        conn.execute(
            text(
                "INSERT INTO consult_conversation (id, customer_id, store_id, topic, status, response_count, "
                "reopened_count, transfer_count, owner_read_message_id, staff_read_message_id, created_at, "
                "updated_at) VALUES (1, 1, 1, 'service', 'open', 0, 0, 0, 0, 0, :at, :at)"
            ),
            {"at": at},
        )
        for message_id, value in typed.items():
            conn.execute(
                text(
                    "INSERT INTO consult_message (id, conversation_id, sender, kind, text, created_at) "
                    "VALUES (:id, 1, 'owner', 'text', :text, :at)"
                ),
                {"id": message_id, "text": value, "at": at},
            )

    upgrade(engine)
    for table, column in (("consult_message", "text"), ("lead", "note"), ("booking", "note")):
        assert f"{column}_sealed" in {c["name"] for c in inspect(engine).get_columns(table)}
    with engine.connect() as conn:
        rows = {r[0]: (r[1], r[2]) for r in conn.execute(text("SELECT id, text, text_sealed FROM consult_message"))}
    assert rows[1][0] == "我的电话 138****5678，下午回我" and vault.decrypt(bytes(rows[1][1])) == typed[1]
    assert rows[2] == ("保养多少钱？", None) and rows[3] == (None, None)

    downgrade(engine, "0030")
    with engine.connect() as conn:
        back = dict(conn.execute(text("SELECT id, text FROM consult_message")).all())
    assert back == typed
    engine.dispose()


def test_log_masking_finds_numbers_inside_free_text() -> None:
    """What owners type: the number inside Chinese text, 0086 in front, a landline with its area
    code; the log filter masks them all (it writes the record's message, what every handler uses)."""
    record = logging.LogRecord(
        "dealerloop.test",
        logging.INFO,
        __file__,
        1,
        "consult message %s",
        ("我的电话008613812345678，座机(021)62345678",),
        None,
    )
    ContextFilter().filter(record)
    assert record.getMessage() == "consult message 我的电话138****5678，座机021-****5678"
    for shape in ("0086 138 1234 5678", "0086-13812345678", "021-62345678", "0755 2345678"):
        out = mask_text(f"请打{shape}谢谢")
        assert "1234" not in out.replace("****", "") and "2345" not in out.replace("****", ""), (shape, out)
    # Not phone numbers: a date, a time, an order number, a VIN, a price.
    for text in ("2026-12-07 10:30", "订单20261207123456", "LFV2A21K7G3000001", "价格 158000 元"):
        assert mask_text(text) == text


def test_naive_datetimes_are_refused_by_the_column_type() -> None:
    from datetime import UTC, datetime

    from backend.platform.db import UTCDateTime

    col = UTCDateTime()
    with pytest.raises(ValueError, match="naive"):
        col.process_bind_param(datetime(2026, 1, 1), None)  # noqa: DTZ001
    stored = col.process_bind_param(datetime(2026, 1, 1, 8, tzinfo=UTC), None)
    assert stored.tzinfo is None and stored.hour == 8
    assert col.process_result_value(stored, None).tzinfo is UTC


def test_engines_are_configured_for_each_database(tmp_path: Any) -> None:
    from sqlalchemy import text

    from backend.platform.db import make_engine

    sqlite = make_engine(f"sqlite:///{tmp_path / 'fk.db'}")
    with sqlite.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    sqlite.dispose()
    maria = make_engine("mysql+pymysql://root@127.0.0.1:3306/test")
    assert maria.url.query["charset"] == "utf8mb4"
    assert maria.pool._pre_ping is True and maria.pool._recycle == 1800
    maria.dispose()


@pytest.mark.parametrize("name", ["prod", "Production", "staging", ""])
def test_unknown_environment_names_are_refused(name: str) -> None:
    if name == "":
        assert load_settings({"DEALERLOOP_ENV": name})["DEALERLOOP_ENV"] == "development"
        return
    with pytest.raises(ConfigError, match="DEALERLOOP_ENV must be one of"):
        load_settings({"DEALERLOOP_ENV": name})


def test_further_wecom_apps_come_from_the_environment() -> None:
    from integrations.wecom.apps import extra_app_configs

    text = '[{"corp_id": "ww2", "agent_id": 1000009, "secret": "s", "token": "t", "aes_key": "' + "k" * 43 + '"}]'
    cfg = load_settings({"WECOM_EXTRA_APPS": text})
    assert [(a["corp_id"], a["agent_id"]) for a in extra_app_configs(cfg)] == [("ww2", "1000009")]
    assert extra_app_configs(load_settings({})) == []
    with pytest.raises(ValueError, match="lacks"):
        extra_app_configs(load_settings({"WECOM_EXTRA_APPS": '[{"corp_id": "ww3"}]'}))
