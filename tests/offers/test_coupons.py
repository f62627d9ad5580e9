"""Coupons through HTTP: templates, claims, the QR write-off at the store, reversal, gifts,
expiry and the report."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select

from backend.offers import service
from backend.offers.models import Coupon, CouponStatus, CouponTemplate
from backend.platform import qr
from backend.platform.audit import AuditLog
from backend.platform.db import utcnow
from backend.touchpoints.models import Touchpoint
from tests.offers.conftest import APP, WB, claim, template_body


def _kinds(db_session: Any, customer_id: int) -> list[str]:
    rows = db_session.scalars(select(Touchpoint.kind).where(Touchpoint.customer_id == customer_id)).all()
    return [str(k) for k in rows]


def test_templates_validate_what_each_kind_needs(client: Any, staff: SimpleNamespace, units: SimpleNamespace) -> None:
    store = units.stores[0].id
    cases = [
        (template_body(store, threshold_fen=0), "threshold_fen"),
        (template_body(store, value_fen=60000), "value_fen"),  # 满500减600 means nothing
        (template_body(store, kind="percent", percent_off=0), "percent_off"),
        (template_body(store, kind="voucher"), "service_type"),
        (template_body(store, use_days=None), "use_ends_at"),
        (template_body(store, claim_ends_at=(utcnow() - timedelta(days=1)).isoformat()), "claim_ends_at"),
        (template_body(store, stock=0), "stock"),
    ]
    for body, field in cases:
        resp = client.post(f"{WB}/coupon-templates", json=body, headers=staff.manager.headers)
        assert resp.status_code == 422, (field, resp.get_json())
        assert resp.get_json()["code"] == "request.invalid"
        assert field in str(resp.get_json()["errors"]), (field, resp.get_json())
    # A store's staff make their own stores' templates only; advisors make none.
    group_wide = client.post(f"{WB}/coupon-templates", json=template_body(None), headers=staff.manager.headers)
    assert group_wide.status_code == 422
    other = client.post(f"{WB}/coupon-templates", json=template_body(units.stores[3].id), headers=staff.manager.headers)
    assert other.status_code == 422
    advisor = client.post(f"{WB}/coupon-templates", json=template_body(store), headers=staff.advisor.headers)
    assert advisor.status_code == 403 and advisor.get_json()["code"] == "auth.forbidden"
    # The group's admins make group-wide ones (funded by the group).
    ok = client.post(f"{WB}/coupon-templates", json=template_body(None), headers=staff.admin.headers)
    assert ok.status_code == 201 and ok.get_json()["store_id"] is None


def test_claim_with_limits_windows_and_idempotency(
    client: Any, db_session: Any, owner: SimpleNamespace, make_template: Any
) -> None:
    template = make_template(stock=2, per_member_limit=1)
    offers = client.get(f"{APP}/offers", headers=owner.headers).get_json()["items"]
    assert [(o["id"], o["left"]) for o in offers] == [(template["id"], 2)]

    first = claim(client, owner.headers, template["id"], key="tap-1")
    assert first.status_code == 201, first.get_json()
    coupon = first.get_json()
    assert coupon["status"] == "unused" and len(coupon["code"]) == 12 and coupon["code"].isdigit()
    replay = claim(client, owner.headers, template["id"], key="tap-1")
    assert replay.status_code == 201 and replay.get_json()["id"] == coupon["id"]
    assert replay.headers["Idempotent-Replayed"] == "true"
    again = claim(client, owner.headers, template["id"], key="tap-2")
    assert again.status_code == 409 and again.get_json()["code"] == "coupon.limit_reached"
    # Nothing of the refused claim was kept: one unit of stock is still there.
    assert db_session.get(CouponTemplate, template["id"]).issued == 1
    assert _kinds(db_session, owner.id).count("coupon_claimed") == 1

    mine = client.get(f"{APP}/me/coupons", headers=owner.headers).get_json()["items"]
    assert [c["id"] for c in mine] == [coupon["id"]]
    assert client.get(f"{APP}/me/coupons?status=used", headers=owner.headers).get_json()["items"] == []


def test_sold_out_window_and_eligibility_refusals(
    client: Any,
    db_session: Any,
    units: SimpleNamespace,
    owner: SimpleNamespace,
    make_customer: Any,
    member_headers: Any,
    make_template: Any,
) -> None:
    sold = make_template(stock=1)
    other = make_customer(units.stores[0])
    assert claim(client, member_headers(other), sold["id"]).status_code == 201
    resp = claim(client, owner.headers, sold["id"])
    assert resp.status_code == 409 and resp.get_json()["code"] == "coupon.sold_out"

    later = make_template(claim_starts_at=(utcnow() + timedelta(days=1)).isoformat())
    resp = claim(client, owner.headers, later["id"])
    assert resp.status_code == 409 and resp.get_json()["code"] == "coupon.not_claimable"

    gold = make_template(eligible_tiers=["gold"], car_brand="大众")
    resp = claim(client, owner.headers, gold["id"])
    assert resp.status_code == 409 and resp.get_json()["code"] == "coupon.not_eligible"
    assert resp.get_json()["errors"]["eligibility"] == ["tier", "car_brand"]
    assert db_session.scalar(select(func.count()).select_from(Coupon).where(Coupon.customer_id == owner.id)) == 0

    assert claim(client, owner.headers, 999_999).status_code == 404


def _claimed(client: Any, owner: SimpleNamespace, make_template: Any, **kw: Any) -> tuple[dict, dict]:
    template = make_template(**kw)
    coupon = claim(client, owner.headers, template["id"]).get_json()
    return template, coupon


def _qr(client: Any, owner: SimpleNamespace, coupon_id: int) -> str:
    resp = client.get(f"{APP}/me/coupons/{coupon_id}/qr", headers=owner.headers)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["token"]


def test_scan_preview_confirm_and_replay(
    client: Any, db_session: Any, owner: SimpleNamespace, staff: SimpleNamespace, make_template: Any
) -> None:
    _, coupon = _claimed(client, owner, make_template)
    token = _qr(client, owner, coupon["id"])

    preview = client.post(f"{WB}/coupons/preview", json={"token": token}, headers=staff.advisor.headers)
    assert preview.status_code == 200, preview.get_json()
    assert preview.get_json()["usable"] is True and preview.get_json()["coupon"]["id"] == coupon["id"]
    assert db_session.get(Coupon, coupon["id"]).status == CouponStatus.UNUSED  # a preview changes nothing

    done = client.post(f"{WB}/coupons/write-offs", json={"token": token}, headers=staff.advisor.headers)
    assert done.status_code == 200, done.get_json()
    result = done.get_json()
    assert result["coupon"]["status"] == "used" and result["write_off"]["staff_id"] == staff.advisor.id
    # The same scan sent again (a retry, a double tap): the same write-off, not a refusal.
    replay = client.post(f"{WB}/coupons/write-offs", json={"token": token}, headers=staff.advisor.headers)
    assert replay.status_code == 200 and replay.get_json()["write_off"]["id"] == result["write_off"]["id"]
    # A new scan of a used coupon is refused, and the app shows no more QR for it.
    typed = client.post(
        f"{WB}/coupons/write-offs", json={"code": coupon["code"], "nonce": "typed-0001"}, headers=staff.advisor.headers
    )
    assert typed.status_code == 409 and typed.get_json()["code"] == "coupon.already_used"
    again = client.get(f"{APP}/me/coupons/{coupon['id']}/qr", headers=owner.headers)
    assert again.status_code == 409 and again.get_json()["code"] == "coupon.already_used"
    assert _kinds(db_session, owner.id).count("coupon_used") == 1


def test_write_off_refusals(
    client: Any,
    app: Any,
    db_session: Any,
    units: SimpleNamespace,
    owner: SimpleNamespace,
    staff: SimpleNamespace,
    make_template: Any,
) -> None:
    _, coupon = _claimed(client, owner, make_template)
    # An expired QR (shown 2 minutes ago) and a forged one.
    old = qr.issue(app.config["SECRET_KEY"], service.QR_PURPOSE, coupon["id"], utcnow() - timedelta(minutes=2))
    resp = client.post(f"{WB}/coupons/write-offs", json={"token": old}, headers=staff.advisor.headers)
    assert resp.status_code == 410 and resp.get_json()["code"] == "qr.expired"
    resp = client.post(f"{WB}/coupons/write-offs", json={"token": old[:-3] + "abc"}, headers=staff.advisor.headers)
    assert resp.status_code == 422 and resp.get_json()["code"] == "qr.invalid"
    # Another purpose's QR (a package's, a check-in's) is not a coupon.
    foreign = qr.issue(app.config["SECRET_KEY"], "event_checkin", coupon["id"], utcnow())
    resp = client.post(f"{WB}/coupons/write-offs", json={"token": foreign}, headers=staff.advisor.headers)
    assert resp.status_code == 422 and resp.get_json()["code"] == "qr.wrong_purpose"
    # A store-0 coupon at another store; and naming a store outside one's scope.
    token = _qr(client, owner, coupon["id"])
    resp = client.post(f"{WB}/coupons/write-offs", json={"token": token}, headers=staff.other_store.headers)
    assert resp.status_code == 409 and resp.get_json()["code"] == "coupon.wrong_store"
    resp = client.post(
        f"{WB}/coupons/write-offs",
        json={"token": token, "store_id": units.stores[0].id},
        headers=staff.other_store.headers,
    )
    assert resp.status_code == 403 and resp.get_json()["code"] == "coupon.wrong_store"
    # Staff above stores name the store; a typed code needs a nonce; both or neither is invalid.
    resp = client.post(f"{WB}/coupons/write-offs", json={"token": token}, headers=staff.region.headers)
    assert resp.status_code == 422 and resp.get_json()["code"] == "coupon.store_required"
    resp = client.post(f"{WB}/coupons/write-offs", json={"code": coupon["code"]}, headers=staff.advisor.headers)
    assert resp.status_code == 422 and resp.get_json()["code"] == "coupon.nonce_required"
    resp = client.post(f"{WB}/coupons/write-offs", json={}, headers=staff.advisor.headers)
    assert resp.status_code == 422 and resp.get_json()["code"] == "request.invalid"
    resp = client.post(
        f"{WB}/coupons/write-offs", json={"code": "000000000000", "nonce": "typed-0002"}, headers=staff.advisor.headers
    )
    assert resp.status_code == 404 and resp.get_json()["code"] == "coupon.code_invalid"
    # Not valid yet.
    _, later = _claimed(
        client,
        owner,
        make_template,
        use_starts_at=(utcnow() + timedelta(days=2)).isoformat(),
        use_days=None,
        use_ends_at=(utcnow() + timedelta(days=9)).isoformat(),
    )
    resp = client.post(
        f"{WB}/coupons/write-offs", json={"token": _qr(client, owner, later["id"])}, headers=staff.advisor.headers
    )
    assert resp.status_code == 409 and resp.get_json()["code"] == "coupon.not_yet_valid"
    # None of it used anything.
    assert db_session.scalar(select(func.count()).select_from(Coupon).where(Coupon.status == CouponStatus.USED)) == 0
    # The region manager at store 1 of their region: a group coupon can be used there.
    group = make_template(store_id=None, headers=staff.admin.headers)
    g = claim(client, owner.headers, group["id"]).get_json()
    resp = client.post(
        f"{WB}/coupons/write-offs",
        json={"token": _qr(client, owner, g["id"]), "store_id": units.stores[1].id},
        headers=staff.region.headers,
    )
    assert resp.status_code == 200 and resp.get_json()["write_off"]["store_id"] == units.stores[1].id


def test_reversal_by_a_manager_only_once_audited(
    client: Any,
    db_session: Any,
    units: SimpleNamespace,
    owner: SimpleNamespace,
    staff: SimpleNamespace,
    make_template: Any,
) -> None:
    _, coupon = _claimed(client, owner, make_template)
    token = _qr(client, owner, coupon["id"])
    row = client.post(f"{WB}/coupons/write-offs", json={"token": token}, headers=staff.advisor.headers).get_json()
    url = f"{WB}/coupons/write-offs/{row['write_off']['id']}/reversal"
    resp = client.post(url, json={"reason": "误核销"}, headers=staff.advisor.headers)
    assert resp.status_code == 403 and resp.get_json()["code"] == "coupon.reverse_forbidden"
    # Another store's manager does not even see it.
    assert client.post(url, json={"reason": "误核销"}, headers=staff.other_manager.headers).status_code == 404
    resp = client.post(url, json={"reason": "误核销"}, headers=staff.manager.headers)
    assert resp.status_code == 200 and resp.get_json()["reversed_by"] == staff.manager.id
    assert client.post(url, json={"reason": "again"}, headers=staff.manager.headers).get_json()["code"] == (
        "coupon.not_reversible"
    )
    db_session.expire_all()
    assert db_session.get(Coupon, coupon["id"]).status == CouponStatus.UNUSED
    actions = db_session.scalars(select(AuditLog.action).where(AuditLog.object_type == "coupon_write_off")).all()
    assert actions == ["coupon.write_off_reversed"]
    assert "coupon_reversed" in _kinds(db_session, owner.id)
    # The old scan still answers its (reversed) write-off; a fresh scan uses the coupon again.
    old = client.post(f"{WB}/coupons/write-offs", json={"token": token}, headers=staff.advisor.headers)
    assert old.status_code == 200 and old.get_json()["write_off"]["reversed_at"] is not None
    row = next(r for r in client.get(f"{WB}/coupons/report", headers=staff.manager.headers).get_json()["items"])
    assert row["used_at_stores"] == []  # the reversed write-off does not count
    fresh = client.post(
        f"{WB}/coupons/write-offs", json={"token": _qr(client, owner, coupon["id"])}, headers=staff.advisor.headers
    )
    assert fresh.status_code == 200 and fresh.get_json()["coupon"]["status"] == "used"
    row = next(r for r in client.get(f"{WB}/coupons/report", headers=staff.manager.headers).get_json()["items"])
    assert row["used_at_stores"] == [{"store_id": units.stores[0].id, "used": 1}] and row["used"] == 1


def test_gift_expiry_and_report(
    client: Any,
    app_ctx: Any,
    db_session: Any,
    units: SimpleNamespace,
    owner: SimpleNamespace,
    staff: SimpleNamespace,
    make_customer: Any,
    make_template: Any,
) -> None:
    template = make_template(stock=5, per_member_limit=2, use_days=1)
    body = {"customer_id": owner.id, "reason": "投诉补偿", "ref": "gift-0001"}
    url = f"{WB}/coupon-templates/{template['id']}/gifts"
    gift = client.post(url, json=body, headers=staff.manager.headers)
    assert gift.status_code == 201 and gift.get_json()["source"] == "staff"
    assert client.post(url, json=body, headers=staff.manager.headers).get_json()["id"] == gift.get_json()["id"]
    # Only to customers of one's scope: another store's, or for an advisor one not theirs.
    far = make_customer(units.stores[3])
    resp = client.post(url, json=body | {"customer_id": far.id, "ref": "gift-0002"}, headers=staff.manager.headers)
    assert resp.status_code == 404
    resp = client.post(url, json=body | {"ref": "gift-0003"}, headers=staff.advisor.headers)
    assert resp.status_code == 404 and resp.get_json()["code"] == "customer.not_found"
    claimed = claim(client, owner.headers, template["id"]).get_json()
    resp = claim(client, owner.headers, template["id"])
    assert resp.get_json()["code"] == "coupon.limit_reached"  # the gift counts against the limit

    assert service.expire_due(db_session, now=utcnow() + timedelta(days=2)) == 2
    assert service.expire_due(db_session, now=utcnow() + timedelta(days=2)) == 0  # each once
    db_session.commit()
    assert _kinds(db_session, owner.id).count("coupon_expired") == 2
    assert {
        c["id"]: c["status"] for c in client.get(f"{APP}/me/coupons", headers=owner.headers).get_json()["items"]
    } == {
        gift.get_json()["id"]: "expired",
        claimed["id"]: "expired",
    }
    report = client.get(f"{WB}/coupons/report", headers=staff.manager.headers).get_json()["items"]
    row = next(r for r in report if r["template_id"] == template["id"])
    assert (row["issued"], row["claimed"], row["given"], row["expired"], row["used"]) == (2, 1, 1, 2, 0)
    assert row["by_source"] == {"claim": 1, "staff": 1} and row["used_at_stores"] == []
    assert client.get(f"{WB}/coupons/report", headers=staff.other_manager.headers).get_json()["items"] == []


def test_stock_edits_never_go_below_what_is_issued(
    client: Any, owner: SimpleNamespace, staff: SimpleNamespace, make_template: Any
) -> None:
    template = make_template(stock=3)
    claim(client, owner.headers, template["id"])
    url = f"{WB}/coupon-templates/{template['id']}"
    resp = client.patch(url, json={"stock": 0}, headers=staff.manager.headers)
    assert resp.status_code == 409 and resp.get_json()["code"] == "coupon.stock_below_issued"
    resp = client.patch(url, json={"stock": 1, "active": False}, headers=staff.manager.headers)
    assert resp.status_code == 200 and (resp.get_json()["stock"], resp.get_json()["active"]) == (1, False)
    assert client.get(f"{APP}/offers", headers=owner.headers).get_json()["items"] == []
    assert client.patch(url, json={"stock": 5}, headers=staff.advisor.headers).status_code == 403


def test_a_brand_scoped_coupon_is_used_only_at_stores_of_that_brand(
    client: Any,
    db_session: Any,
    units: SimpleNamespace,
    owner: SimpleNamespace,
    staff: SimpleNamespace,
    make_template: Any,
) -> None:
    from backend.stores.models import StoreProfile

    db_session.add(StoreProfile(store_id=units.stores[0].id, brands=["一汽-大众"]))
    db_session.add(StoreProfile(store_id=units.stores[1].id, brands=["宝马", "MINI"]))
    db_session.commit()
    _, coupon = _claimed(client, owner, make_template, store_id=None, headers=staff.admin.headers, brands=["宝马"])
    token = _qr(client, owner, coupon["id"])
    preview = client.post(f"{WB}/coupons/preview", json={"token": token}, headers=staff.advisor.headers).get_json()
    assert (preview["usable"], preview["refusal"]) == (False, "coupon.wrong_brand")
    resp = client.post(f"{WB}/coupons/write-offs", json={"token": token}, headers=staff.advisor.headers)
    assert resp.status_code == 409 and resp.get_json()["code"] == "coupon.wrong_brand"
    resp = client.post(
        f"{WB}/coupons/write-offs", json={"token": token, "store_id": units.stores[1].id}, headers=staff.region.headers
    )
    assert resp.status_code == 200 and resp.get_json()["write_off"]["store_id"] == units.stores[1].id
