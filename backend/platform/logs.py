"""Structured logging: JSON lines in production, request/actor/job ids on every record,
phone numbers and tokens masked before anything is written."""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
actor_id_var: ContextVar[str | None] = ContextVar("actor_id", default=None)
job_id_var: ContextVar[str | None] = ContextVar("job_id", default=None)

# Every shape `normalize_phone` accepts: 13812345678, 138-1234-5678, +86 138 1234 5678, (138)12345678,
# 0086 13812345678 (an owner types the international prefix as 00, not +: 008613812345678 had no
# digit boundary before the 138 and stayed in clear).
_MOBILE = r"(?<!\d)(?:(?:\+|00)?86[-\s]?)?\(?(1[3-9]\d)\)?[-\s]?(\d{4})[-\s]?(\d{4})(?!\d)"
# A landline with its area code, written the way people do: 021-62345678, 0755 2345678, (010)12345678.
# The separator or brackets are required: a bare run of 10-12 digits is as often an order or a VIN
# fragment as a phone number, and the mobile pattern above already covers the 11-digit case.
_LANDLINE = r"(?<!\d)\(?(0[1-9]\d{1,2})(?:\)[-\s]?|[-\s])([2-9]\d{2,3})[-\s]?(\d{4})(?!\d)"
_PHONE = re.compile(f"{_MOBILE}|{_LANDLINE}")
_SECRET_PARAMS = re.compile(
    r"(?i)\b(access_token|refresh_token|token|secret|corpsecret|js_code|code|session_key|password)"
    r"(\"?\s*[=:]\s*\"?)([^&\s\",}]+)"
)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")


def mask_phone(phone: str) -> str:
    """138****1234: the masked form shown in lists, logs and to callers without the right."""
    digits = re.sub(r"\D", "", phone or "")
    if len(digits) >= 11:
        digits = digits[-11:]
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits) > 4:
        return "*" * (len(digits) - 4) + digits[-4:]
    return "****"


def _masked_match(match: re.Match[str]) -> str:
    if match.group(1):  # a mobile: 138****5678
        return f"{match.group(1)}****{match.group(3)}"
    return f"{match.group(4)}-****{match.group(6)}"  # a landline: 021-****5678


def mask_phones(text: str) -> str:
    """Every phone number in free text masked (an owner writes "我的电话 13812345678" into a
    message; an advisor types numbers into WeCom remarks)."""
    return _PHONE.sub(_masked_match, text)


def mask_text(text: str) -> str:
    text = mask_phones(text)
    text = _SECRET_PARAMS.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    return _BEARER.sub(r"\1***", text)


class ContextFilter(logging.Filter):
    """Adds request_id / actor_id / job_id and masks the rendered message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.actor_id = actor_id_var.get()
        record.job_id = job_id_var.get()
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = str(record.msg)
        record.msg = mask_text(message)
        record.args = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "actor_id": getattr(record, "actor_id", None),
            "job_id": getattr(record, "job_id", None),
        }
        if record.exc_info:
            entry["exc"] = mask_text(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s [req=%(request_id)s actor=%(actor_id)s job=%(job_id)s] %(message)s"
        )

    def formatException(self, ei) -> str:  # noqa: N802 - logging API
        return mask_text(super().formatException(ei))


def configure_logging(fmt: str = "text", level: str = "INFO") -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_dealerloop", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._dealerloop = True  # type: ignore[attr-defined]
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)  # readyz asks every probe
