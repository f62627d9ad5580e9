"""JWT access tokens (Authlib JOSE, HS256 only) and rotating, revocable refresh tokens.

Owner and staff tokens carry different audiences and are not interchangeable. A refresh
token is an opaque random string stored hashed; each use rotates it, and the reuse of an
already-rotated token revokes the whole family (it means the token was stolen or replayed).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
import warnings
from datetime import datetime, timedelta
from typing import Any

import authlib.deprecate  # noqa: E402,F401  (installs its own "always" filter; ours must come after)
from sqlalchemy import ForeignKey, Index, String, Update, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from backend.platform.db import Base, BigId, utcnow
from backend.platform.errors import AppError

with warnings.catch_warnings():
    # authlib.jose announces its successor (joserfc); it stays supported until Authlib 2.0 and is
    # what the architecture names, so the notice is silenced here and nowhere else.
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.jose import JsonWebToken
    from authlib.jose.errors import JoseError

ISSUER = "dealerloop"
AUDIENCES = ("owner", "staff")
_jwt = JsonWebToken(["HS256"])  # explicit allow-list: "none" and RS/ES confusion are refused


def issue_access_token(secret: str, audience: str, subject: int, ttl: int, extra: dict[str, Any] | None = None) -> str:
    now = utcnow()
    claims = {
        "iss": ISSUER,
        "aud": audience,
        "sub": str(subject),
        "typ": "access",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl)).timestamp()),
        "jti": uuid.uuid4().hex,
        **(extra or {}),
    }
    return _jwt.encode({"alg": "HS256", "typ": "JWT"}, claims, secret).decode()


def verify_access_token(secret: str, token: str, audience: str) -> dict[str, Any]:
    """Return the claims, or raise AppError 401 (invalid / expired / tampered / wrong audience)."""
    try:
        claims = _jwt.decode(
            token,
            secret,
            claims_options={
                "iss": {"essential": True, "value": ISSUER},
                "sub": {"essential": True},
                "exp": {"essential": True},
                "aud": {"essential": True},
                "typ": {"essential": True, "value": "access"},
            },
        )
        claims.validate(now=int(utcnow().timestamp()), leeway=5)
    except (JoseError, ValueError, TypeError) as exc:
        raise AppError("auth.token_invalid", 401) from exc
    if claims.get("aud") != audience:
        raise AppError("auth.wrong_audience", 401)
    return dict(claims)


class RefreshToken(Base):
    __tablename__ = "refresh_token"
    __table_args__ = (
        Index("ix_refresh_token_family", "family_id"),
        # A subject's sessions since a moment (a reversed customer merge ends those of the survivor).
        Index("ix_refresh_token_subject", "subject_id", "audience", "issued_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(32))
    audience: Mapped[str] = mapped_column(String(8))
    subject_id: Mapped[int]
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    rotated_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    replaced_by_id: Mapped[int | None] = mapped_column(ForeignKey("refresh_token.id"), default=None)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_refresh_token(
    session: Session, audience: str, subject_id: int, ttl: int, family_id: str | None = None
) -> tuple[str, RefreshToken]:
    raw = secrets.token_urlsafe(32)
    row = RefreshToken(
        token_hash=_hash(raw),
        family_id=family_id or uuid.uuid4().hex,
        audience=audience,
        subject_id=subject_id,
        expires_at=utcnow() + timedelta(seconds=ttl),
    )
    session.add(row)
    session.flush()
    return raw, row


def rotate_refresh_token(session: Session, raw: str, audience: str, ttl: int) -> tuple[str, RefreshToken]:
    """Consume a refresh token and return its successor. Locks the row so that two concurrent
    uses of the same token cannot both succeed."""
    row = session.scalars(
        select(RefreshToken).where(RefreshToken.token_hash == _hash(raw)).with_for_update()
    ).one_or_none()
    if row is None or row.audience != audience:
        raise AppError("auth.refresh_token_invalid", 401)
    now = utcnow()
    if row.rotated_at is not None or row.revoked_at is not None:
        if row.rotated_at is not None:
            revoke_family(session, row.family_id)
            # The revocation must survive the error response, so it is committed by the caller.
            session.info["commit_despite_error"] = True
            raise AppError("auth.refresh_token_reused", 401)
        raise AppError("auth.refresh_token_invalid", 401)
    if row.expires_at <= now:
        raise AppError("auth.refresh_token_invalid", 401)
    new_raw, new_row = issue_refresh_token(session, audience, row.subject_id, ttl, family_id=row.family_id)
    row.rotated_at = now
    row.replaced_by_id = new_row.id
    return new_raw, new_row


def revoke_family(session: Session, family_id: str) -> None:
    now = utcnow()
    for token in session.scalars(select(RefreshToken).where(RefreshToken.family_id == family_id)):
        if token.revoked_at is None:
            token.revoked_at = now


def revoke_token(session: Session, raw: str, audience: str) -> None:
    row = session.scalars(select(RefreshToken).where(RefreshToken.token_hash == _hash(raw))).one_or_none()
    if row is not None and row.audience == audience:
        revoke_family(session, row.family_id)


def revoke_sessions_since(audience: str, subject_id: int, since: datetime) -> Update:
    """The revocation of a subject's live sessions opened at or after `since` (their refresh
    tokens; rotated ones are already spent). Reads through ix_refresh_token_subject."""
    return (
        update(RefreshToken)
        .where(
            RefreshToken.subject_id == subject_id,
            RefreshToken.audience == audience,
            RefreshToken.issued_at >= since,
            RefreshToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
