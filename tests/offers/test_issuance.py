"""Other ways to get a coupon: exchange codes, pushes to a segment (a job), automatic moments
(first car, birthday, first paid order), and the points mall."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select

from backend.customers.models import Customer
from backend.customers.vin import vin_problem
from backend.offers import service
from backend.offers.models import Coupon, CouponTemplate
from backend.platform.db import utcnow
from backend.points.models import ItemKind, MallItem, MallOrder, PointsAccount
from tests.offers.conftest import APP, WB


def _coupons(db_session: Any, template_id: int, customer_id: int | None = None) -> int:
    stmt = select(func.count()).select_from(Coupon).where(Coupon.template_id == template_id)
    if customer_id is not None:
        stmt = stmt.where(Coupon.customer_id == customer_id)
    return db_session.scalar(stmt)


def _vins(n: int) -> list[str]:
    """Valid VINs (the check digit is computed, not guessed)."""
    out = []
    for serial in range(100000, 200000):
        for check in "0123456789X":
            vin = f"LFV2A21K{check}G3{serial}"
            if vin_problem(vin) is None:
                out.append(vin)
                break
        if len(out) == n:
            return out
    raise AssertionError("no VINs")


def test_exchange_code_once_per_member(client: Any, owner: SimpleNamespace, make_template: Any) -> None:
    template = make_template(exchange_code="SPRING2027", stock=5, per_member_limit=3)
    first = client.post(f"{APP}/offers/exchange", json={"code": " spring2027 "}, headers=owner.headers)
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["source"] == "exchange" and first.get_json()["template_id"] == template["id"]
    again = client.post(f"{APP}/offers/exchange", json={"code": "SPRING2027"}, headers=owner.headers)
    assert again.status_code == 201 and again.get_json()["id"] == first.get_json()["id"]
    bad = client.post(f"{APP}/offers/exchange", json={"code": "NOPE000"}, headers=owner.headers)
    assert bad.status_code == 404 and bad.get_json()["code"] == "coupon.exchange_code_invalid"


def test_push_to_a_segment_within_stock_and_once_per_campaign(
    client: Any,
    db_session: Any,
    units: SimpleNamespace,
    staff: SimpleNamespace,
    make_customer: Any,
    make_template: Any,
) -> None:
    gold = [make_customer(units.stores[0]) for _ in range(3)]
    for c in gold:
        db_session.get(Customer, c.id).tier = "gold"
    make_customer(units.stores[0])  # standard tier: not in the segment
    db_session.commit()
    seg = client.post(
        f"{WB}/segments", json={"name": "金卡", "filters": {"tiers": ["gold"]}}, headers=staff.manager.headers
    )
    assert seg.status_code == 201, seg.get_json()
    segment_id = seg.get_json()["id"]

    scarce = make_template(stock=2)
    push = client.post(
        f"{WB}/coupon-templates/{scarce['id']}/pushes", json={"segment_id": segment_id}, headers=staff.manager.headers
    )
    assert push.status_code == 202, push.get_json()
    listed = client.get(f"{WB}/coupon-templates/{scarce['id']}/pushes", headers=staff.manager.headers).get_json()
    row = listed["items"][0]
    assert (row["status"], row["issued"], row["sold_out"], row["skipped"]) == ("done", 2, 1, 0)
    assert _coupons(db_session, scarce["id"]) == 2

    from backend.campaigns.models import Campaign

    now = utcnow()
    campaign = Campaign(
        name="金卡回馈", owner_unit_id=units.stores[0].id, starts_at=now, ends_at=now + timedelta(days=7)
    )
    db_session.add(campaign)
    db_session.commit()
    campaign_id = campaign.id
    plenty = make_template(stock=100, per_member_limit=5)
    url = f"{WB}/coupon-templates/{plenty['id']}/pushes"
    for _ in range(2):  # pushed twice for one campaign: one coupon each
        body = {"segment_id": segment_id, "campaign_id": campaign_id}
        resp = client.post(url, json=body, headers=staff.manager.headers)
        assert resp.status_code == 202
    assert _coupons(db_session, plenty["id"]) == 3
    assert set(db_session.scalars(select(Coupon.campaign_id).where(Coupon.template_id == plenty["id"]))) == {
        campaign_id
    }
    assert db_session.scalar(select(func.count()).select_from(Coupon).where(Coupon.source == "push")) == 5
    report = client.get(f"{WB}/coupons/report", headers=staff.manager.headers).get_json()["items"]
    row = next(r for r in report if r["template_id"] == plenty["id"])
    assert row["by_campaign"] == [{"campaign_id": campaign_id, "issued": 3, "used": 0}]
    assert row["by_source"] == {"push": 3}
    # Advisors push nothing; another store's segment is not found.
    refused = client.post(url, json={"segment_id": segment_id}, headers=staff.advisor.headers)
    assert refused.status_code == 403
    far = client.post(url, json={"segment_id": segment_id}, headers=staff.other_manager.headers)
    assert far.status_code == 404


def test_first_car_and_birthday_give_their_templates_once(
    client: Any, app_ctx: Any, db_session: Any, owner: SimpleNamespace, staff: SimpleNamespace, make_template: Any
) -> None:
    first_car = make_template(auto_issue_on="car_bound", stock=10, per_member_limit=5)
    birthday = make_template(auto_issue_on="birthday", stock=10, per_member_limit=5)
    for vin in _vins(2):
        resp = client.post(f"{APP}/me/cars", json={"vin": vin}, headers=owner.headers)
        assert resp.status_code == 201, resp.get_json()
    assert _coupons(db_session, first_car["id"], owner.id) == 1

    customer = db_session.get(Customer, owner.id)
    customer.birthday = (utcnow() + timedelta(hours=8)).date().replace(year=1990)  # today in Shanghai
    db_session.commit()
    assert service.birthday_coupons(db_session) == 1
    assert service.birthday_coupons(db_session) == 0  # once a year
    db_session.commit()
    assert _coupons(db_session, birthday["id"], owner.id) == 1


def test_a_sold_out_automatic_template_never_fails_what_triggered_it(
    client: Any, db_session: Any, owner: SimpleNamespace, make_template: Any
) -> None:
    template = make_template(auto_issue_on="car_bound", stock=1)
    db_session.get(CouponTemplate, template["id"]).issued = 1
    db_session.commit()
    resp = client.post(f"{APP}/me/cars", json={"vin": _vins(1)[0]}, headers=owner.headers)
    assert resp.status_code == 201, resp.get_json()
    assert _coupons(db_session, template["id"]) == 0


def test_mall_sells_coupons_for_points_and_never_takes_points_for_none(
    client: Any, app_ctx: Any, db_session: Any, owner: SimpleNamespace, make_template: Any
) -> None:
    from backend.points import service as points

    points.earn(db_session, owner.id, 1000, key="t:seed", reason_code="test", operator="system:test", expiry="never")
    template = make_template(stock=1, per_member_limit=5, kind="fixed", value_fen=5000, threshold_fen=0)
    item = MallItem(
        name="¥50 代金券", kind=ItemKind.COUPON, points_price=100, stock=10, coupon_template_id=template["id"]
    )
    db_session.add(item)
    db_session.commit()
    item_id = item.id
    bought = client.post(f"{APP}/mall/redemptions", json={"item_id": item_id}, headers=owner.headers)
    assert bought.status_code == 201, bought.get_json()
    assert bought.get_json()["state"] == "completed"
    coupons = client.get(f"{APP}/me/coupons", headers=owner.headers).get_json()["items"]
    assert [(c["source"], c["template_id"]) for c in coupons] == [("mall", template["id"])]
    # The template is out of coupons: the redemption fails whole, points and stock untouched.
    again = client.post(f"{APP}/mall/redemptions", json={"item_id": item_id}, headers=owner.headers)
    assert again.status_code == 409 and again.get_json()["code"] == "coupon.sold_out"
    db_session.expire_all()
    account = db_session.scalars(select(PointsAccount).where(PointsAccount.customer_id == owner.id)).one()
    assert account.available == 900
    assert db_session.get(MallItem, item_id).sold == 1
    assert db_session.scalar(select(func.count()).select_from(MallOrder)) == 1
