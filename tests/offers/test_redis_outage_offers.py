"""Redis down while an owner claims a coupon and the store writes it off: neither needs Redis
(the claim's stock, the coupon, the write-off and their touchpoints are rows in one
transaction, and neither queues a job), so both succeed at once, the same Idempotency-Key and
the same scan replay during and after the outage, and nothing waits in the outbox."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.offers.models import Coupon, CouponStatus, CouponTemplate, CouponWriteOff
from backend.platform.db import db
from backend.platform.jobs import OutboxJob
from backend.touchpoints.models import Touchpoint
from tests.offers.conftest import APP, WB, claim


def _count(app: Any, model: Any, *where: Any) -> int:
    with app.app_context():
        try:
            return db.session().scalar(select(func.count()).select_from(model).where(*where))
        finally:
            db.session.remove()


@pytest.mark.redis
def test_claim_and_write_off_while_redis_is_down_replay_once_it_is_back(
    app: Any, client: Any, owner: SimpleNamespace, staff: SimpleNamespace, make_template: Any, redis_outage: Any
) -> None:
    template = make_template(stock=2, per_member_limit=1)
    redis_outage.down()
    first = claim(client, owner.headers, template["id"], key="rd-claim-1")
    assert first.status_code == 201, first.get_json()
    coupon = first.get_json()
    again = claim(client, owner.headers, template["id"], key="rd-claim-1")
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true")
    assert again.get_json()["id"] == coupon["id"]

    qr = client.get(f"{APP}/me/coupons/{coupon['id']}/qr", headers=owner.headers)
    assert qr.status_code == 200, qr.get_json()
    token = qr.get_json()["token"]
    scans = [
        client.post(f"{WB}/coupons/write-offs", json={"token": token}, headers=staff.advisor.headers) for _ in "ab"
    ]
    assert [s.status_code for s in scans] == [200, 200], scans[0].get_json()
    write_off = scans[0].get_json()["write_off"]
    assert scans[1].get_json()["write_off"]["id"] == write_off["id"]

    def assert_state() -> None:
        with app.app_context():
            s = db.session()
            assert s.get(CouponTemplate, template["id"]).issued == 1
            stored = s.scalars(select(Coupon)).one()
            assert (stored.id, stored.status) == (coupon["id"], CouponStatus.USED)
            db.session.remove()
        assert _count(app, CouponWriteOff) == 1
        kinds = Touchpoint.kind.in_(["coupon_claimed", "coupon_used"])
        assert _count(app, Touchpoint, Touchpoint.customer_id == owner.id, kinds) == 2
        assert _count(app, OutboxJob) == 0  # nothing was queued, so nothing can be lost or doubled

    assert_state()
    redis_outage.up()
    assert redis_outage.drain() == 0
    replay = claim(client, owner.headers, template["id"], key="rd-claim-1")
    assert (replay.status_code, replay.get_json()["id"]) == (201, coupon["id"])
    assert replay.headers.get("Idempotent-Replayed") == "true"
    scan = client.post(f"{WB}/coupons/write-offs", json={"token": token}, headers=staff.advisor.headers)
    assert scan.status_code == 200 and scan.get_json()["write_off"]["id"] == write_off["id"]
    assert_state()
