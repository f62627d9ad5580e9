"""Rotating signed QR tokens: what a scan accepts and what it refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backend.platform import qr
from backend.platform.errors import AppError

SECRET = "a-test-secret-that-is-long-enough-for-hmac"
NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


def _code(fn, *args) -> tuple[str, int]:
    with pytest.raises(AppError) as info:
        fn(*args)
    return info.value.code, info.value.status


def test_a_fresh_token_verifies_with_its_subject_and_nonce() -> None:
    token = qr.issue(SECRET, "coupon", 42, NOW)
    scanned = qr.verify(SECRET, token, "coupon", NOW + timedelta(seconds=30))
    assert (scanned.purpose, scanned.subject) == ("coupon", 42)
    assert scanned.expires_at == NOW + timedelta(seconds=qr.DEFAULT_TTL_SECONDS)
    assert len(scanned.nonce) >= 16


def test_every_refresh_has_a_new_nonce() -> None:
    nonces = {qr.verify(SECRET, qr.issue(SECRET, "member", 7, NOW), "member", NOW).nonce for _ in range(20)}
    assert len(nonces) == 20


def test_expired_token_is_refused_with_410() -> None:
    token = qr.issue(SECRET, "coupon", 1, NOW, ttl_seconds=60)
    assert _code(qr.verify, SECRET, token, "coupon", NOW + timedelta(seconds=60)) == ("qr.expired", 410)
    # a token "from the future" beyond the clock skew is refused too
    assert _code(qr.verify, SECRET, token, "coupon", NOW - timedelta(seconds=30)) == ("qr.expired", 410)
    assert qr.verify(SECRET, token, "coupon", NOW - timedelta(seconds=qr.CLOCK_SKEW_SECONDS - 1)).subject == 1


def test_tampered_forged_or_garbled_tokens_are_invalid() -> None:
    token = qr.issue(SECRET, "coupon", 1, NOW)
    body, sig = token.split(".")
    other_body = qr.issue(SECRET, "coupon", 2, NOW).split(".")[0]
    forged = qr.issue("another-secret-entirely-xxxxxxxxxxxx", "coupon", 1, NOW)
    for bad in (f"{other_body}.{sig}", forged, "garbage", "a.b.c", f"{body}."):
        assert _code(qr.verify, SECRET, bad, "coupon", NOW) == ("qr.invalid", 422)


def test_a_token_for_another_purpose_is_refused() -> None:
    token = qr.issue(SECRET, "member", 5, NOW)
    assert _code(qr.verify, SECRET, token, "coupon", NOW) == ("qr.wrong_purpose", 422)
