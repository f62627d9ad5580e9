"""A request that loses a lock race answers a retryable 503 in the one error format, never a
500, and keeps nothing: a real deadlock on MariaDB between a coupon claim and another
transaction, which InnoDB settles by rolling the claim back."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pymysql
import pytest
from sqlalchemy import func, select

from backend.customers.models import Customer
from backend.offers.models import Coupon, CouponClaimCounter, CouponKind, CouponTemplate
from backend.platform.db import db, utcnow
from backend.platform.tokens import issue_access_token
from tests.threads import lock_wait_seen

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def test_a_claim_that_deadlocks_answers_503_and_keeps_nothing(app: Any, database_url: str) -> None:
    """Another transaction (heavier: it has changed 40 customers' rows) holds the offer's row.
    The member's claim locks their customer row, writes its counter, coupon and touchpoint, and
    waits for the offer's row; the other transaction then asks for the member's row. InnoDB
    breaks the cycle by rolling back the lighter one, the claim: 503 service.busy with
    Retry-After, and no coupon, no counter, no stock taken."""
    with app.app_context():
        s = db.session()
        members = [Customer(name=f"锁{i}") for i in range(41)]
        now = utcnow()
        template = CouponTemplate(
            name="洗车券",
            kind=CouponKind.VOUCHER,
            service_type="wash",
            stock=10,
            per_member_limit=1,
            claim_starts_at=now - timedelta(hours=1),
            claim_ends_at=now + timedelta(days=1),
            use_days=30,
        )
        s.add_all([*members, template])
        s.commit()
        member_id, others, template_id = members[0].id, [m.id for m in members[1:]], template.id
        db.session.remove()

    name = database_url.rsplit("/", 1)[1].split("?")[0]
    other = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database=name)
    try:
        with other.cursor() as cur:
            cur.executemany("UPDATE customer SET name = CONCAT(name, '改') WHERE id = %s", [(i,) for i in others])
            cur.execute("SELECT id FROM coupon_template WHERE id = %s FOR UPDATE", (template_id,))
        headers = {"Authorization": f"Bearer {issue_access_token(app.config['SECRET_KEY'], 'owner', member_id, 900)}"}
        outcome: dict[str, Any] = {}
        claim = threading.Thread(
            target=lambda: outcome.update(
                response=app.test_client().post(f"/api/app/v1/offers/{template_id}/claim", json={}, headers=headers)
            )
        )
        claim.start()
        assert lock_wait_seen(10), "the claim never waited for the offer's row"
        with other.cursor() as cur:
            cur.execute("SELECT id FROM customer WHERE id = %s FOR UPDATE", (member_id,))  # the cycle
        claim.join(30)
    finally:
        other.rollback()
        other.close()

    response = outcome["response"]
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["code"] == "service.busy"
    assert response.headers["Retry-After"] == "1"
    with app.app_context():
        s = db.session()
        try:
            assert s.scalar(select(func.count()).select_from(Coupon).where(Coupon.template_id == template_id)) == 0
            counters = s.scalars(select(CouponClaimCounter).where(CouponClaimCounter.template_id == template_id))
            assert counters.all() == []
            assert s.get(CouponTemplate, template_id).issued == 0
        finally:
            db.session.remove()
