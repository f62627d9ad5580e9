"""Notices to members about their points (expiry reminders, tier changes).

They are subscribe messages like every other owner notice: recorded once per dedup key in the
transaction that decided them and sent through the shared `backend.notices` room (one counted
grant per message; 43101 final; no template / no openid recorded). This module only says what
the two messages contain.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from backend.notices.models import SubscribeNotice
from backend.notices.service import send_subscribe, thing

# Notice kind -> the setting holding its subscribe-message template id.
TEMPLATE_SETTINGS = {
    "points_expiring": "SUBSCRIBE_TEMPLATE_POINTS_EXPIRING",
    "tier_changed": "SUBSCRIBE_TEMPLATE_TIER_CHANGED",
}
PAGE = "pages/points/index"


def message_data(kind: str, payload: dict[str, Any]) -> dict[str, dict[str, str]]:
    if kind == "points_expiring":
        return {
            "thing1": {"value": "您有积分即将过期"},
            "number2": {"value": str(payload.get("points", 0))},
            "date3": {"value": str(payload.get("expires_on", ""))},
            "thing4": {"value": "可在积分商城兑换礼品"},
        }
    if kind == "tier_changed":
        upgraded = payload.get("reason") == "upgrade"  # the cycle review may lower it
        return {
            "thing1": {"value": thing(f"会员等级{'升级' if upgraded else '调整'}为{payload.get('name', '')}")},
            "number2": {"value": str(payload.get("growth", 0))},
            "thing3": {"value": "点击查看会员权益"},
        }
    raise ValueError(f"no message for notice kind {kind!r}")


def record_notice(
    session: Session, customer_id: int, kind: str, dedup_key: str, payload: dict[str, Any]
) -> SubscribeNotice | None:
    """Record a notice once and schedule its sending; None if it was recorded before."""
    return send_subscribe(
        session,
        customer_id=customer_id,
        template_setting=TEMPLATE_SETTINGS[kind],
        dedup_key=f"points:{dedup_key}",
        data=message_data(kind, payload),
        page=PAGE,
    )
