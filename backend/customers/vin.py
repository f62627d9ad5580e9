"""VIN validation (ISO 3779 / GB 16735): 17 characters, no I, O or Q, and the position-9 check
digit for the regions whose standard requires it (China GB 16735, North America FMVSS 115)."""

from __future__ import annotations

import re

_VIN_RE = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
_TRANSLIT = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
# First WMI character: L = mainland China, 1-5 = North America. Elsewhere (e.g. Europe) the
# ninth character is not a check digit and must not be rejected.
_CHECKED_REGIONS = set("L12345")


def check_digit(vin: str) -> str:
    total = sum(_TRANSLIT[c] * w for c, w in zip(vin, _WEIGHTS, strict=True))
    rem = total % 11
    return "X" if rem == 10 else str(rem)


def vin_problem(raw: str) -> str | None:
    """None when valid, else a short English reason."""
    vin = (raw or "").strip().upper()
    if len(vin) != 17:
        return "a VIN has exactly 17 characters"
    if not _VIN_RE.match(vin):
        return "a VIN uses digits and capital letters except I, O and Q"
    if vin[0] in _CHECKED_REGIONS and vin[8] != check_digit(vin):
        return "the check digit (9th character) does not match"
    return None


def normalize_vin(raw: str) -> str:
    return (raw or "").strip().upper()
