"""A typed code sent with a nonce that already named another coupon's write-off is refused
(409 coupon.nonce_reused); before, it answered 200 "written off" with the other coupon's write-off
while this coupon stayed unused."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select

from backend.offers.models import Coupon, CouponStatus, CouponWriteOff
from backend.platform.db import db
from tests.offers.conftest import APP, WB


def test_a_typed_code_with_another_coupons_nonce_is_refused(
    app: Any, client: Any, owner: SimpleNamespace, staff: SimpleNamespace, make_template: Any
) -> None:
    # A counter app reuses a nonce (a stuck counter): the second, different coupon must not be
    # answered "written off" while it stays unused.
    template = make_template(kind="voucher", service_type="wash", value_fen=0, threshold_fen=0, per_member_limit=2)
    first = client.post(f"{APP}/offers/{template['id']}/claim", json={}, headers=owner.headers).get_json()
    second = client.post(f"{APP}/offers/{template['id']}/claim", json={}, headers=owner.headers).get_json()
    used = client.post(
        f"{WB}/coupons/write-offs", json={"code": first["code"], "nonce": "nonce-0001"}, headers=staff.manager.headers
    )
    assert used.status_code == 200, used.get_json()
    again = client.post(
        f"{WB}/coupons/write-offs", json={"code": second["code"], "nonce": "nonce-0001"}, headers=staff.manager.headers
    )
    with app.app_context():
        s = db.session()
        try:
            status = s.get(Coupon, second["id"]).status
            rows = s.scalar(
                select(func.count()).select_from(CouponWriteOff).where(CouponWriteOff.coupon_id == second["id"])
            )
        finally:
            db.session.remove()
    assert again.status_code == 409 and again.get_json()["code"] == "coupon.nonce_reused", again.get_json()
    assert status == CouponStatus.UNUSED and rows == 0
    replay = client.post(
        f"{WB}/coupons/write-offs", json={"code": first["code"], "nonce": "nonce-0001"}, headers=staff.manager.headers
    )
    assert replay.status_code == 200 and replay.get_json()["write_off"] == used.get_json()["write_off"]
