"""dealerloop: the backend of a car-dealer group's customer operations.

`create_app` is the composition root: it reads the settings, builds the database, the job
dispatcher and the WeChat / WeCom / Pay gateways, and registers the owner API, the workbench
and the integrations' endpoints. The domain packages never import `workbench` or
`integrations`; they receive what they need from here.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, g, request, send_from_directory

from backend.config import load_settings
from backend.platform.api import DealerloopFlask, init_api
from backend.platform.db import db
from backend.platform.jobs import Dispatcher
from backend.platform.logs import actor_id_var, configure_logging, request_id_var
from backend.platform.pii import PhoneVault

log = logging.getLogger("dealerloop")


def create_app(config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Flask:
    settings = load_settings(environ, config)
    app = DealerloopFlask("dealerloop", instance_relative_config=False)
    app.config.update(settings)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # Chinese stays readable in responses

    configure_logging(app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])
    _configure_database(app)
    _configure_redis_and_jobs(app)
    app.extensions["dealerloop.phone_vault"] = PhoneVault(app.config["PII_ENCRYPTION_KEY"], app.config["PII_INDEX_KEY"])
    _configure_gateways(app)
    _configure_request_context(app)
    _register_api(app)
    _register_commands(app)
    return app


def _configure_database(app: Flask) -> None:
    url = app.config["DATABASE_URL"]
    if url.startswith("sqlite:///") and "instance" in url:
        from pathlib import Path

        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    db.init(
        url,
        pool_size=app.config["DB_POOL_SIZE"],
        max_overflow=app.config["DB_MAX_OVERFLOW"],
        pool_timeout=app.config["DB_POOL_TIMEOUT"],
    )

    @app.teardown_appcontext
    def _remove_session(_exc: BaseException | None) -> None:
        db.session.remove()


def connect_redis(url: str) -> Any:
    """The app's Redis client (jobs hand-over, notify rate limiter, token cache, health check).

    Every caller has a way on without Redis (the outbox, the database count, this process's
    tokens), so a command must fail at once when Redis is unreachable. Built from the URL, the
    client's connection pool does not retry; `redis.Redis(host=...)` would (10 times, with backoff
    up to 1 s: ~4.6 s per command on a refused port). Tests build their outage clients here."""
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2, health_check_interval=30)


def _configure_redis_and_jobs(app: Flask) -> None:
    redis_client = connect_redis(app.config["REDIS_URL"]) if app.config["REDIS_URL"] else None
    app.extensions["dealerloop.redis"] = redis_client
    app.extensions["dealerloop.jobs"] = Dispatcher(redis_client, max_attempts=app.config["JOB_MAX_ATTEMPTS"])
    # Register the job functions of every feature.
    import backend.jobs  # noqa: F401


SANDBOX_NOTIFY_HOST = "https://dealerloop.sandbox"


def _configure_gateways(app: Flask) -> None:
    from integrations import build_gateways

    if app.config["SANDBOX_ENABLED"]:
        from werkzeug.middleware.dispatcher import DispatcherMiddleware

        from integrations.sandbox import create_sandbox, dev_credentials

        # The sandbox's credentials and hosts, all of them: real credentials are never sent to
        # the sandbox, and sandbox-issued codes can never reach code configured for real hosts.
        credentials = dev_credentials()
        app.config.update(credentials)
        base = app.config["PUBLIC_BASE_URL"].rstrip("/") + "/sandbox"
        app.config["WECHAT_API_BASE"] = f"{base}/wechat"
        app.config["WECOM_API_BASE"] = f"{base}/wecom"
        app.config["WECOM_OAUTH_BASE"] = f"{base}/wecom"  # the sandbox also plays open.weixin.qq.com
        app.config["WECHATPAY_GATEWAY"] = f"{base}/wechatpay"
        # It plays WeCom's authorize page for this app only: the app's own host is its trusted
        # domain, and a redirect anywhere else gets no code (as WeCom refuses one).
        sandbox = create_sandbox(credentials, trusted_hosts=[urlsplit(app.config["PUBLIC_BASE_URL"]).hostname or ""])
        if not app.config.get("WECHATPAY_NOTIFY_URL"):
            # WeChat Pay only posts to https URLs; the sandbox keeps that rule and maps the
            # placeholder host back to this server when it delivers notifications.
            from integrations.sandbox.wechatpay_ledger import ledger

            app.config["WECHATPAY_NOTIFY_URL"] = f"{SANDBOX_NOTIFY_HOST}/callbacks/wechatpay/payment"
            ledger(sandbox.state).url_map[SANDBOX_NOTIFY_HOST] = app.config["PUBLIC_BASE_URL"].rstrip("/")
        app.extensions["dealerloop.sandbox"] = sandbox
        app.wsgi_app = DispatcherMiddleware(app.wsgi_app, sandbox.mounts())  # type: ignore[method-assign]
    app.extensions["dealerloop.gateways"] = build_gateways(app.config, app.extensions["dealerloop.redis"])
    from integrations.wecom.apps import add_wecom_apps

    add_wecom_apps(app.extensions["dealerloop.gateways"], app.config)  # WECOM_EXTRA_APPS, if any


def _configure_request_context(app: Flask) -> None:
    @app.before_request
    def _request_ids() -> None:
        rid = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex
        g.request_id = rid
        request_id_var.set(rid)
        actor_id_var.set(None)

    @app.after_request
    def _echo_request_id(response):  # type: ignore[no-untyped-def]
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response


def _register_api(app: Flask) -> None:
    import swagger_ui_bundle

    api = init_api(app)
    app.extensions["dealerloop.api"] = api

    # Swagger UI's assets are served from the installed package, so /docs works offline.
    @app.route("/docs-assets/<path:filename>")
    def _docs_assets(filename: str):  # type: ignore[no-untyped-def]
        return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename)

    from backend.api import register_owner_api
    from backend.ops.api import blp as ops_blp
    from integrations.callbacks import install_callback_lanes, register_callbacks
    from workbench import register_pages, register_workbench

    api.register_blueprint(ops_blp)
    register_owner_api(api)
    register_workbench(api)
    register_pages(app)
    register_callbacks(api)
    install_callback_lanes(app)


def _register_commands(app: Flask) -> None:
    from backend.cli import register_commands

    register_commands(app)
