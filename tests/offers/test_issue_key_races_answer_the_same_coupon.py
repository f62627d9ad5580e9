"""One exchange code or one gift `ref` sent twice at once (no shared Idempotency-Key) issues one coupon
and answers it to both; before, the later request met the unique issue key and answered 409
`request.conflict` (real threads on MariaDB)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.offers.models import Coupon, CouponClaimCounter, CouponTemplate
from backend.platform.db import db
from tests.offers.conftest import APP, WB
from tests.threads import run_threads

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def _books(app: Any, template_id: int) -> tuple[int, int, int]:
    with app.app_context():
        s = db.session()
        try:
            issued = s.get(CouponTemplate, template_id).issued
            coupons = s.scalar(select(func.count()).select_from(Coupon).where(Coupon.template_id == template_id))
            claimed = s.scalar(
                select(func.coalesce(func.sum(CouponClaimCounter.claimed), 0)).where(
                    CouponClaimCounter.template_id == template_id
                )
            )
            return issued, coupons, int(claimed)
        finally:
            db.session.remove()


def test_one_exchange_code_typed_at_once_on_two_phones_gives_one_coupon(
    app: Any, owner: SimpleNamespace, make_template: Any
) -> None:
    # The member types the flyer's code on two phones (no shared Idempotency-Key): the docstring
    # promises "typing it again answers the same coupon", so both answer it, and one is issued.
    template = make_template(exchange_code="RACE2027", stock=5, per_member_limit=3)
    client = app.test_client()
    results = run_threads(
        6, lambda i: client.post(f"{APP}/offers/exchange", json={"code": "RACE2027"}, headers=owner.headers)
    )
    statuses = [getattr(r, "status_code", repr(r)) for r in results]
    bodies = [r.get_json() if hasattr(r, "get_json") else None for r in results]
    assert statuses == [201] * 6, list(zip(statuses, bodies, strict=True))
    assert len({b["id"] for b in bodies}) == 1
    assert _books(app, template["id"]) == (1, 1, 1)


def test_one_gift_sent_at_once_by_two_staff_with_one_ref_gives_one_coupon(
    app: Any, owner: SimpleNamespace, staff: SimpleNamespace, make_template: Any
) -> None:
    # Two managers' screens submit the same gift (the client's `ref`) at once, each with its own
    # Idempotency-Key: "the same ref gives once", so both answer that coupon.
    template = make_template(stock=5, per_member_limit=3)
    client = app.test_client()
    body = {"customer_id": owner.id, "reason": "投诉补偿", "ref": "gift-0001"}
    heads = [staff.manager.headers, staff.admin.headers] * 3
    results = run_threads(
        6, lambda i: client.post(f"{WB}/coupon-templates/{template['id']}/gifts", json=body, headers=heads[i])
    )
    statuses = [getattr(r, "status_code", repr(r)) for r in results]
    bodies = [r.get_json() if hasattr(r, "get_json") else None for r in results]
    assert statuses == [201] * 6, list(zip(statuses, bodies, strict=True))
    assert len({b["id"] for b in bodies}) == 1
    assert _books(app, template["id"]) == (1, 1, 1)
