"""The app's settings for a write benchmark's database: one place for the gunicorn environment
and the in-process app that prepares data with the project's own services."""

from __future__ import annotations

from typing import Any

SECRET_KEY = "dealerloop-bench-secret-key-0123456789abcdef"  # fixed, bench database only


def app_env(url: str, **extra: str) -> dict[str, str]:
    """Environment of the measured gunicorn app (no Redis, no sandbox, quiet logs)."""
    return {
        "DEALERLOOP_ENV": "development",
        "DATABASE_URL": url,
        "SANDBOX_ENABLED": "0",
        "REDIS_URL": "",
        "LOG_LEVEL": "WARNING",
        "SECRET_KEY": SECRET_KEY,
        **extra,
    }


def in_process_app(url: str, **extra: Any) -> Any:
    """The same app in this process, for setting up data and capturing SQL."""
    from backend import create_app

    return create_app({**app_env(url), "SANDBOX_ENABLED": False, **extra})
