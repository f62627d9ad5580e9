"""Settings, read from the environment inside `create_app` (never at import time).

Development has embedded defaults: a SQLite file under `instance/`, inline jobs, and the
sandbox standing in for WeChat, WeCom and WeChat Pay. In production (`DEALERLOOP_ENV` or
`FLASK_ENV` = production) every secret must be given, or start-up stops naming what is missing.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Integration credentials: required in production, filled from the sandbox in development.
INTEGRATION_SECRETS = (
    "WECHAT_APP_ID",
    "WECHAT_APP_SECRET",
    "WECOM_CORP_ID",
    "WECOM_AGENT_ID",
    "WECOM_SECRET",
    "WECOM_CALLBACK_TOKEN",
    "WECOM_CALLBACK_AES_KEY",
    "WECHATPAY_MCHID",
    "WECHATPAY_APPID",
    "WECHATPAY_PRIVATE_KEY",
    "WECHATPAY_CERT_SERIAL",
    "WECHATPAY_APIV3_KEY",
    "WECHATPAY_PUBLIC_KEY",
    "WECHATPAY_PUBLIC_KEY_ID",
)
REQUIRED_IN_PRODUCTION = ("SECRET_KEY", "DATABASE_URL", "PII_ENCRYPTION_KEY", "PII_INDEX_KEY", *INTEGRATION_SECRETS)

# name -> (development default, description). Documented in the README's configuration table.
SETTINGS: dict[str, tuple[Any, str]] = {
    "DEALERLOOP_ENV": ("development", "development | production | test"),
    "SECRET_KEY": (None, "signs JWTs (HS256); at least 32 random bytes in production"),
    "DATABASE_URL": (None, "SQLAlchemy URL; default sqlite file instance/dealerloop.db; production: mysql+pymysql://…"),
    "DB_POOL_SIZE": (10, "database connections kept open per process"),
    "DB_MAX_OVERFLOW": (20, "extra connections a process may open under load"),
    "DB_POOL_TIMEOUT": (30, "seconds a request waits for a free connection before answering 503 service.busy"),
    "REDIS_URL": ("", "Redis for RQ queues, locks, WeChat token cache; empty = jobs run inline after commit"),
    "PII_ENCRYPTION_KEY": (None, "base64 of 32 bytes: AES-256-GCM key for phone numbers at rest"),
    "PII_INDEX_KEY": (None, "base64 of 32 bytes: HMAC key for the phone blind index"),
    "ACCESS_TOKEN_TTL": (900, "seconds an access JWT lives"),
    "REFRESH_TOKEN_TTL": (30 * 86400, "seconds a refresh token lives"),
    "MAX_CONTENT_LENGTH": (1024 * 1024, "largest request body in bytes"),
    "SANDBOX_ENABLED": (False, "mount the WeChat/WeCom/Pay sandbox at /sandbox (default: on in development)"),
    "PUBLIC_BASE_URL": ("http://127.0.0.1:5000", "where this server is reached; the sandbox base URLs derive from it"),
    "WECHAT_API_BASE": ("https://api.weixin.qq.com", "mini-program API host"),
    "WECOM_API_BASE": ("https://qyapi.weixin.qq.com", "WeCom API host"),
    "WECOM_OAUTH_BASE": ("https://open.weixin.qq.com", "WeCom OAuth2 authorize host (the H5 workbench pages' login)"),
    "WECHATPAY_GATEWAY": ("https://api.mch.weixin.qq.com", "WeChat Pay APIv3 host"),
    "WECHATPAY_NOTIFY_URL": ("", "https URL WeChat Pay posts notifications to"),
    "WECOM_EXTRA_APPS": (
        "",
        "JSON list of further WeCom apps: corp_id, agent_id, secret, token, aes_key[, api_base, oauth_base]",
    ),
    "SUBSCRIBE_TEMPLATE_POINTS_EXPIRING": ("", "subscribe-message template id: points about to expire"),
    "SUBSCRIBE_TEMPLATE_TIER_CHANGED": ("", "subscribe-message template id: member tier changed"),
    "SUBSCRIBE_TEMPLATE_BOOKING_CONFIRMED": ("", "subscribe-message template id: booking confirmed"),
    "SUBSCRIBE_TEMPLATE_BOOKING_REMINDER": ("", "subscribe-message template id: booking reminder"),
    "SUBSCRIBE_TEMPLATE_BOOKING_CHANGED": ("", "subscribe-message template id: booking changed"),
    "SUBSCRIBE_TEMPLATE_BOOKING_CANCELLED": ("", "subscribe-message template id: booking cancelled by the store"),
    "BOOKING_MIN_NOTICE_MINUTES": (120, "booking: minutes between now and the earliest slot an owner may book"),
    "BOOKING_HORIZON_DAYS": (30, "booking: owners book up to this many days ahead (local days after today)"),
    "BOOKING_CANCEL_CUTOFF_MINUTES": (120, "booking: owners cannot cancel online less than this many minutes before"),
    "BOOKING_RESCHEDULE_CUTOFF_MINUTES": (120, "booking: owners cannot reschedule less than this many minutes before"),
    "BOOKING_MAX_ACTIVE_PER_CAR": (1, "booking: active (booked / arrived / in service) bookings a car may have"),
    "BOOKING_MAX_RESCHEDULES": (2, "booking: times one booking may be rescheduled"),
    "BOOKING_NO_SHOW_GRACE_MINUTES": (30, "booking: a booking not checked in this long after its start is a no-show"),
    "BOOKING_NO_SHOW_LIMIT": (3, "booking: this many no-shows within the window block online booking (0 = never)"),
    "BOOKING_NO_SHOW_WINDOW_DAYS": (90, "booking: the window in which no-shows are counted"),
    "BOOKING_NO_SHOW_BLOCK_DAYS": (30, "booking: days online booking stays blocked after the last counted no-show"),
    "BOOKING_CAPACITY_DAYS_AHEAD": (31, "booking: days of slots generated ahead from each store's weekly template"),
    "CONSULT_SLA_MINUTES": (10, "business minutes an owner may wait for an answer before a consultation is overdue"),
    "SUBSCRIBE_TEMPLATE_CONSULT_REPLIED": ("", "subscribe-message template id: an advisor answered"),
    "SUBSCRIBE_TEMPLATE_EVENT_NOTICE": ("", "subscribe-message template id: event sign-up, seat offered, reminder"),
    "EVENT_OFFER_HOURS": (24, "hours a freed event seat is held for the first owner on the waitlist to accept"),
    "EVENT_PAY_MINUTES": (15, "minutes a seat of a paid event is held for its payment"),
    "EVENT_REMINDER_HOURS": (24, "hours before an event that signed-up owners are reminded"),
    "SUBSCRIBE_TEMPLATE_COUPON_NOTICE": ("", "subscribe-message template id: coupon received or expiring"),
    "SUBSCRIBE_TEMPLATE_LEAD_UPDATE": ("", "subscribe-message template id: enquiry status changed"),
    "UPSTREAM_TIMEOUT": (5.0, "seconds before an upstream call is abandoned (answered 504)"),
    "LOG_FORMAT": ("text", "text | json (json is the default in production)"),
    "LOG_LEVEL": ("INFO", "root log level"),
    "JOB_MAX_ATTEMPTS": (5, "tries of a background job before it is left failed"),
    **{k: ("", "WeChat / WeCom / WeChat Pay credential (development: the sandbox's)") for k in INTEGRATION_SECRETS},
}


ENVIRONMENTS = ("development", "test", "production")


class ConfigError(RuntimeError):
    pass


def _coerce(name: str, raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be a boolean, got {raw!r}")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def _dev_key(label: str) -> str:
    # Deterministic development keys so that data encrypted by one `make run` can be read by the next.
    return base64.b64encode(hashlib.sha256(f"dealerloop-dev-{label}".encode()).digest()).decode()


def _is_local_database(url: str | None) -> bool:
    """SQLite (the default), or a server on this machine (loopback, or its socket)."""
    if not url:
        return True
    try:
        parsed = make_url(url)
    except ArgumentError:
        return True  # not a URL at all: the engine refuses it with its own message
    if parsed.get_backend_name() == "sqlite" or "unix_socket" in parsed.query:
        return True
    host = (parsed.host or "").strip("[]")
    if host in ("", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> dict:
    env = dict(os.environ if environ is None else environ)
    overrides = dict(overrides or {})
    env_name = overrides.get("DEALERLOOP_ENV") or env.get("DEALERLOOP_ENV") or env.get("FLASK_ENV") or "development"
    if env_name not in ENVIRONMENTS:
        # A typo ("prod") must not silently start with development keys and the sandbox.
        raise ConfigError(f"DEALERLOOP_ENV must be one of {', '.join(ENVIRONMENTS)}, got {env_name!r}")
    production = env_name == "production"

    cfg: dict[str, Any] = {}
    for name, (default, _doc) in SETTINGS.items():
        if name in overrides:
            cfg[name] = overrides[name]
        elif env.get(name, "") != "":
            cfg[name] = _coerce(name, env[name], default)
        else:
            cfg[name] = default
    cfg["DEALERLOOP_ENV"] = env_name
    cfg.update({k: v for k, v in overrides.items() if k not in cfg})

    if production:
        missing = [k for k in REQUIRED_IN_PRODUCTION if not cfg.get(k)]
        if missing:
            raise ConfigError("production start-up stopped; missing settings: " + ", ".join(missing))
        if cfg.get("SANDBOX_ENABLED"):
            raise ConfigError("SANDBOX_ENABLED must not be set in production")
        cfg["SANDBOX_ENABLED"] = False
        if env.get("LOG_FORMAT") is None and "LOG_FORMAT" not in overrides:
            cfg["LOG_FORMAT"] = "json"
    else:
        sandbox_by_default = "SANDBOX_ENABLED" not in overrides and env.get("SANDBOX_ENABLED", "") == ""
        if not _is_local_database(cfg["DATABASE_URL"]):
            # The development defaults are public: the secret key below signs tokens anyone can
            # then mint, and the sandbox hands out WeCom login codes for any userid. On a database
            # of another host (a deployment that forgot DEALERLOOP_ENV=production) they would let
            # anyone in as any staff member, so such a setup names its own.
            unnamed = [k for k in ("SECRET_KEY", "PII_ENCRYPTION_KEY", "PII_INDEX_KEY") if not cfg.get(k)]
            unnamed += ["SANDBOX_ENABLED"] if sandbox_by_default else []
            if unnamed:
                raise ConfigError(
                    f"DEALERLOOP_ENV is {env_name} but DATABASE_URL names a database on another host: set "
                    f"DEALERLOOP_ENV=production, or give {', '.join(unnamed)} yourself"
                )
        cfg["SECRET_KEY"] = cfg["SECRET_KEY"] or "dev-only-secret-key-not-for-production-use-0123456789"
        cfg["DATABASE_URL"] = cfg["DATABASE_URL"] or f"sqlite:///{PROJECT_ROOT / 'instance' / 'dealerloop.db'}"
        cfg["PII_ENCRYPTION_KEY"] = cfg["PII_ENCRYPTION_KEY"] or _dev_key("pii-enc")
        cfg["PII_INDEX_KEY"] = cfg["PII_INDEX_KEY"] or _dev_key("pii-index")
        if sandbox_by_default:
            cfg["SANDBOX_ENABLED"] = True

    if len(str(cfg["SECRET_KEY"])) < 32:
        raise ConfigError("SECRET_KEY must be at least 32 characters")
    for key in ("PII_ENCRYPTION_KEY", "PII_INDEX_KEY"):
        try:
            raw = base64.b64decode(cfg[key], validate=True)
        except Exception as exc:
            raise ConfigError(f"{key} must be base64") from exc
        if len(raw) != 32:
            raise ConfigError(f"{key} must decode to 32 bytes")
    return cfg
