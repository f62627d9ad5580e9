"""Rotating signed QR tokens for in-store scans (coupon write-off, event check-in, ...).

The owner's app shows a QR that encodes a short token; staff scan it. The token says what it is
for (`purpose`), whom it is about (`subject`, e.g. a coupon or a member id), when it stops being
valid and a random `nonce` that the app changes with every refresh (about once a minute). It is
signed with a key derived from SECRET_KEY for this use only, so a token cannot be forged or
stretched, and a screenshot stops working after its TTL.

Replays are the consuming feature's business: it stores the nonce with the effect under a unique
key, so scanning the same token twice answers the same result instead of acting twice.

Format: `<base64url(json)>.<base64url(hmac-sha256)>` — short enough for a QR at phone size.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from backend.platform.errors import AppError, register_messages

DEFAULT_TTL_SECONDS = 60
# Phones and scanners disagree on the time by a few seconds; a token from "the near future"
# within this margin is accepted.
CLOCK_SKEW_SECONDS = 5

register_messages(
    {
        "qr.invalid": ("二维码无效", "The QR code is not valid"),
        "qr.expired": ("二维码已过期，请刷新后重试", "The QR code has expired; refresh it and scan again"),
        "qr.wrong_purpose": ("二维码用途不符", "This QR code is not for this use"),
    }
)


@dataclass(frozen=True)
class ScannedToken:
    purpose: str
    subject: int
    nonce: str
    issued_at: datetime
    expires_at: datetime


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"dealerloop rotating qr v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(secret: str, purpose: str, subject: int, now: datetime, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> str:
    """A fresh token (new nonce) for `subject`, valid for `ttl_seconds` from `now`."""
    iat = int(now.timestamp())
    body = json.dumps(
        {"p": purpose, "s": subject, "n": secrets.token_urlsafe(12), "iat": iat, "exp": iat + ttl_seconds},
        separators=(",", ":"),
    ).encode()
    return f"{_b64(body)}.{_b64(hmac.new(_key(secret), body, hashlib.sha256).digest())}"


def verify(secret: str, token: str, purpose: str, now: datetime) -> ScannedToken:
    """The token's content, or AppError 422 qr.invalid / qr.wrong_purpose, 410 qr.expired."""
    try:
        body_part, sig_part = token.split(".")
        body = _unb64(body_part)
        signature = _unb64(sig_part)
    except (ValueError, TypeError):
        raise AppError("qr.invalid", 422) from None
    if not hmac.compare_digest(signature, hmac.new(_key(secret), body, hashlib.sha256).digest()):
        raise AppError("qr.invalid", 422)
    try:
        claims = json.loads(body)
        token_purpose, subject, nonce = str(claims["p"]), int(claims["s"]), str(claims["n"])
        iat, exp = int(claims["iat"]), int(claims["exp"])
    except (ValueError, KeyError, TypeError):
        raise AppError("qr.invalid", 422) from None
    if token_purpose != purpose:
        raise AppError("qr.wrong_purpose", 422)
    moment = now.timestamp()
    if moment >= exp or moment + CLOCK_SKEW_SECONDS < iat:
        raise AppError("qr.expired", 410)
    return ScannedToken(
        purpose=token_purpose,
        subject=subject,
        nonce=nonce,
        issued_at=datetime.fromtimestamp(iat, UTC),
        expires_at=datetime.fromtimestamp(exp, UTC),
    )
