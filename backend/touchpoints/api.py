"""Owner API: my own activity feed (the owner-visible part of my touchpoints)."""

from __future__ import annotations

from typing import Any

from backend.customers.api import blp
from backend.platform.api import current_member, self_only
from backend.platform.db import db
from backend.touchpoints.models import OWNER_VISIBLE_KINDS
from backend.touchpoints.schemas import OwnerFeedPageSchema, OwnerFeedQuerySchema
from backend.touchpoints.service import TimelineFilter, timeline


@blp.route("/me/activity")
@self_only
@blp.arguments(OwnerFeedQuerySchema, location="query")
@blp.response(200, OwnerFeedPageSchema)
def my_activity(args: dict[str, Any]) -> dict[str, Any]:
    """My activity, newest first (keyset pagination with `cursor`)."""
    items, next_cursor = timeline(
        db.session(),
        current_member().customer_id,
        TimelineFilter(),
        limit=args["limit"],
        cursor=args.get("cursor"),
        only_kinds=frozenset(k.value for k in OWNER_VISIBLE_KINDS),
    )
    return {"items": items, "next_cursor": next_cursor}
