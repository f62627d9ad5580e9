"""Shared helpers for the points tests (and the scope-enumeration world)."""

from __future__ import annotations

from typing import Any

from backend.points.models import (
    AdjustmentState,
    ItemKind,
    MallItem,
    MallOrder,
    MallOrderState,
    PointsAdjustment,
)


def foreign_points_ids(session: Any, store: Any, customer: Any, staff: Any) -> dict[str, int]:
    """Objects outside store 0's scope and owned by another member, one per path parameter."""
    item = MallItem(name="外店商品", kind=ItemKind.PHYSICAL, points_price=10, stock=1, store_id=store.id)
    session.add(item)
    session.flush()
    order = MallOrder(
        order_no="MSCOPE0000000001",
        customer_id=customer.id,
        item_id=item.id,
        item_kind=ItemKind.PHYSICAL,
        quantity=1,
        points_total=10,
        state=MallOrderState.PLACED,
        store_id=store.id,
    )
    adjustment = PointsAdjustment(
        customer_id=customer.id, delta=5000, reason="scope", state=AdjustmentState.PENDING, requested_by=staff.id
    )
    session.add_all([order, adjustment])
    session.flush()
    return {"item_id": item.id, "redemption_id": order.id, "adjustment_id": adjustment.id}
