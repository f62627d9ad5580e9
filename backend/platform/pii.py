"""Personal data at rest: phone numbers encrypted with AES-256-GCM plus an HMAC blind index.

The ciphertext carries a version byte and its nonce so keys can be rotated later; the blind
index (HMAC-SHA256 of the normalised number) allows exact lookup without decrypting.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"
_PHONE_RE = re.compile(r"^1[3-9]\d{9}$")


class PhoneInvalid(ValueError):
    pass


def normalize_phone(raw: str) -> str:
    """Mainland mobile numbers as 11 digits; +86 / 86 prefixes and separators removed."""
    digits = re.sub(r"[\s\-()]", "", raw or "")
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if not _PHONE_RE.match(digits):
        raise PhoneInvalid("not a mainland China mobile number")
    return digits


class PhoneVault:
    def __init__(self, encryption_key_b64: str, index_key_b64: str) -> None:
        self._aead = AESGCM(base64.b64decode(encryption_key_b64))
        self._index_key = base64.b64decode(index_key_b64)

    def encrypt(self, phone: str) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, phone.encode(), b"phone")

    def decrypt(self, blob: bytes) -> str:
        if blob[:1] != _VERSION:
            raise ValueError("unknown ciphertext version")
        nonce, ct = blob[1:13], blob[13:]
        return self._aead.decrypt(nonce, ct, b"phone").decode()

    def blind_index(self, phone: str) -> str:
        return hmac.new(self._index_key, normalize_phone(phone).encode(), hashlib.sha256).hexdigest()

    def noted(self, typed: str) -> tuple[str, str | None]:
        """A number as somebody typed it (an advisor's note): a mainland mobile normalised, with
        its blind index; anything else (a landline, a Hong Kong number) as typed, without one."""
        try:
            number = normalize_phone(typed)
        except PhoneInvalid:
            return typed, None
        return number, self.blind_index(number)
