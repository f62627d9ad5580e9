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

    ctx = MigrationContext.configure(db_session.connection(), opts={"compare_type": True})
    assert compare_metadata(ctx, metadata) == []


def test_migrations_downgrade_and_upgrade_cleanly(tmp_path: Any) -> None:
    from sqlalchemy import inspect

    from backend.platform.db import make_engine
    from backend.platform.migrate import current_revision, downgrade, head_revision, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert "touchpoint" in inspect(engine).get_table_names()
    engine.dispose()


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
