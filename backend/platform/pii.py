"""Personal data at rest: phone numbers encrypted with AES-256-GCM plus an HMAC blind index.

The ciphertext carries a version byte and its nonce so keys can be rotated later; the blind
index (HMAC-SHA256 of the normalised number) allows exact lookup without decrypting.

Free text people type (a consultation message, a lead's note, a booking remark) carries phone
numbers too. Such a column stores the text with every number masked (what every reader,
excerpt, notification and touchpoint copy gets) and, only when a number was found, the text as
typed sealed in a `<column>_sealed` twin; `sealed_text_field` names the twins that staff may
open, through one audited reveal (backend/customers/service.reveal_sealed_text).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.platform.logs import mask_phones

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

    def seal_text(self, typed: str | None) -> SealedText:
        """Free text as stored: numbers masked, the text as typed sealed only if it had one
        (text without a number is stored unchanged, with nothing to reveal)."""
        if not typed:
            return SealedText(typed, None)
        shown = mask_phones(typed)
        return SealedText(shown, self.encrypt(typed) if shown != typed else None)

    def open_text(self, shown: str | None, sealed: bytes | None) -> str | None:
        """The text as typed: the sealed twin when there is one, else the stored text itself."""
        return self.decrypt(bytes(sealed)) if sealed else shown


@dataclass(frozen=True)
class SealedText:
    shown: str | None  # the text with every phone number masked: 138****5678, 021-****5678
    sealed: bytes | None  # the text as typed, sealed; None when it held no number


def seal_into(obj: Any, column: str, typed: str | None, vault: PhoneVault) -> None:
    """Writes free text into `column` and its `<column>_sealed` twin (the one way such a column
    is written, so no feature can store a typed number in clear)."""
    sealed = vault.seal_text(typed)
    setattr(obj, column, sealed.shown)
    setattr(obj, f"{column}_sealed", sealed.sealed)


@dataclass(frozen=True)
class SealedTextField:
    model: type
    column: str
    scope: str  # the scope resource a staff member must see the object through


_SEALED_TEXT_FIELDS: dict[str, SealedTextField] = {}


def register_sealed_text(kind: str, model: type, column: str, scope: str) -> None:
    """A free-text column with a sealed twin that staff may open through the audited reveal."""
    _SEALED_TEXT_FIELDS[kind] = SealedTextField(model, column, scope)


def sealed_text_field(kind: str) -> SealedTextField:
    return _SEALED_TEXT_FIELDS[kind]


def sealed_text_fields() -> dict[str, SealedTextField]:
    return dict(_SEALED_TEXT_FIELDS)
