"""Shared helpers for the campaigns and segments tests (and the scope-enumeration world)."""

from __future__ import annotations

from typing import Any


def foreign_campaign_ids(session: Any, store: Any) -> dict[str, int]:
    """Objects owned by `store` (outside store 0's scope), one per path parameter."""
    from backend.segments.models import Segment

    segment = Segment(name="外店分群", owner_unit_id=store.id, filters={})
    session.add(segment)
    session.flush()
    return {"segment_id": segment.id}
