"""Owner API of subscribe messages: report accepted templates, see grants and notices."""

from __future__ import annotations

from typing import Any

from backend.notices import service
from backend.notices.schemas import GrantsInSchema, GrantsSchema, NoticeListSchema
from backend.platform.api import Blueprint, current_member, self_only
from backend.platform.db import db
from backend.platform.idempotency import idempotent

blp = Blueprint(
    "owner_notices", __name__, url_prefix="/api/app/v1", audience="owner", description="订阅消息 — subscribe messages"
)


@blp.route("/notices/grants", methods=["POST"])
@self_only
@idempotent
@blp.arguments(GrantsInSchema)
@blp.response(200, GrantsSchema)
def post_grants(args: dict[str, Any]) -> dict[str, Any]:
    """Report what wx.requestSubscribeMessage answered (send an Idempotency-Key: a retried report
    must not count its accepts twice)."""
    return {"grants": service.record_grants(db.session(), current_member().customer_id, args["results"])}


@blp.route("/notices/grants")
@self_only
@blp.response(200, GrantsSchema)
def get_grants() -> dict[str, Any]:
    return {"grants": service.grants(db.session(), current_member().customer_id)}


@blp.route("/notices")
@self_only
@blp.response(200, NoticeListSchema)
def list_notices() -> dict[str, Any]:
    notices = service.member_notices(db.session(), current_member().customer_id)
    return {"items": [service.as_dict(n) for n in notices]}
