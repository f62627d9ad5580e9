from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy.orm import Session

from backend.platform.tokens import issue_access_token, issue_refresh_token, revoke_token, rotate_refresh_token


def _ttl() -> tuple[int, int]:
    return current_app.config["ACCESS_TOKEN_TTL"], current_app.config["REFRESH_TOKEN_TTL"]


def issue_tokens(
    session: Session, audience: str, subject_id: int, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    access_ttl, refresh_ttl = _ttl()
    refresh, _row = issue_refresh_token(session, audience, subject_id, refresh_ttl)
    return {
        "access_token": issue_access_token(current_app.config["SECRET_KEY"], audience, subject_id, access_ttl, extra),
        "token_type": "Bearer",
        "expires_in": access_ttl,
        "refresh_token": refresh,
        "refresh_expires_in": refresh_ttl,
    }


def refresh_tokens(session: Session, audience: str, raw_refresh: str, claims_for: Any = None) -> dict[str, Any]:
    """Rotate the refresh token; `claims_for(subject_id)` adds audience-specific claims."""
    access_ttl, refresh_ttl = _ttl()
    new_raw, row = rotate_refresh_token(session, raw_refresh, audience, refresh_ttl)
    extra = claims_for(row.subject_id) if claims_for else None
    return {
        "access_token": issue_access_token(
            current_app.config["SECRET_KEY"], audience, row.subject_id, access_ttl, extra
        ),
        "token_type": "Bearer",
        "expires_in": access_ttl,
        "refresh_token": new_raw,
        "refresh_expires_in": refresh_ttl,
    }


def logout(session: Session, audience: str, raw_refresh: str) -> None:
    revoke_token(session, raw_refresh, audience)
