"""Explicit, audited, reversible merges of two customer rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.customers.models import Car, Customer, CustomerAdvisor, CustomerIdentity, IdentityKind
from backend.platform.audit import AuditLog
from backend.touchpoints.models import Touchpoint
from backend.touchpoints.service import profile_of, record


class _Ids:
    def __init__(self, ident: int) -> None:
        self.id = ident


def _setup(db_session: Any, tree: Any, make_staff: Any, make_customer: Any) -> Any:
    manager = make_staff(tree.stores[0], "store_manager")
    sales = make_staff(tree.stores[0], "sales_advisor")
    service_adv = make_staff(tree.stores[0], "service_advisor")
    target = make_customer(tree.stores[0], advisor=sales, openid="o-target")
    source = make_customer(tree.stores[0], advisor=service_adv, role="service_advisor", phone="13600001234")
    db_session.add(CustomerIdentity(customer_id=source.id, kind=IdentityKind.EXTERNAL_USERID, value="wm-source"))
    db_session.add(Car(customer_id=source.id, vin="LFV2A21K7G3000001"))
    for n in range(3):
        record(
            db_session,
            customer_id=source.id,
            kind="message_sent",
            channel="wecom",
            source="t",
            source_ref=f"s{n}",
            advisor_id=service_adv.id,
        )
    record(
        db_session,
        customer_id=target.id,
        kind="call_logged",
        channel="phone",
        source="t",
        source_ref="t0",
        advisor_id=sales.id,
    )
    db_session.commit()
    return manager, source, target


def test_merge_moves_everything_and_reverse_restores_it(
    client: Any, db_session: Any, tree: Any, make_staff: Any, make_customer: Any, staff_headers: Any
) -> None:
    manager, source, target = _setup(db_session, tree, make_staff, make_customer)
    h = staff_headers(manager)
    source, target = _Ids(source.id), _Ids(target.id)  # plain ids: the ORM objects go stale across requests
    before_target = profile_of(db_session, target.id)
    resp = client.post(
        "/api/workbench/v1/customer-merges",
        json={"source_id": source.id, "target_id": target.id, "reason": "同一人"},
        headers=h,
    )
    assert resp.status_code == 201, resp.get_json()
    merge = resp.get_json()
    db_session.expire_all()
    assert db_session.get(Customer, source.id).merged_into_id == target.id
    assert db_session.scalar(select(Car.customer_id)) == target.id
    ext = db_session.scalars(select(CustomerIdentity).where(CustomerIdentity.value == "wm-source")).one()
    assert ext.customer_id == target.id
    assert {
        a.role for a in db_session.scalars(select(CustomerAdvisor).where(CustomerAdvisor.customer_id == target.id))
    } == {"sales_advisor", "service_advisor"}
    assert profile_of(db_session, target.id)["touchpoint_count"] == 5  # 3 moved + 1 own + customer_merged
    assert (
        client.get(f"/api/workbench/v1/customers/{source.id}", headers=h).status_code == 404
    )  # merged rows are hidden
    detail = client.get(f"/api/workbench/v1/customers/{target.id}", headers=h).get_json()
    assert detail["phone"] == "136****1234"
    assert db_session.scalars(select(AuditLog.action)).all() == ["customer.merged"]

    undo = client.post(f"/api/workbench/v1/customer-merges/{merge['id']}/reverse", headers=h)
    assert undo.status_code == 200, undo.get_json()
    db_session.expire_all()
    assert db_session.get(Customer, source.id).merged_into_id is None
    assert db_session.scalar(select(Car.customer_id)) == source.id
    assert (
        db_session.scalars(select(CustomerIdentity).where(CustomerIdentity.value == "wm-source")).one().customer_id
        == source.id
    )
    assert db_session.get(Customer, target.id).phone_encrypted is None
    src_kinds = db_session.scalars(select(Touchpoint.kind).where(Touchpoint.customer_id == source.id)).all()
    assert sorted(src_kinds) == ["message_sent"] * 3
    after_target = profile_of(db_session, target.id)
    assert after_target["counts_by_kind"] == {
        **before_target["counts_by_kind"],
        "customer_merged": 1,
        "customer_unmerged": 1,
    }
    again = client.post(f"/api/workbench/v1/customer-merges/{merge['id']}/reverse", headers=h)
    assert again.status_code == 409 and again.get_json()["code"] == "customer.merge_already_reversed"
    assert sorted(db_session.scalars(select(AuditLog.action)).all()) == ["customer.merge_reversed", "customer.merged"]


def test_advisors_cannot_merge(
    client: Any, db_session: Any, tree: Any, make_staff: Any, make_customer: Any, staff_headers: Any
) -> None:
    adv = make_staff(tree.stores[0], "sales_advisor")
    a = make_customer(tree.stores[0], advisor=adv)
    b = make_customer(tree.stores[0], advisor=adv)
    resp = client.post(
        "/api/workbench/v1/customer-merges",
        json={"source_id": a.id, "target_id": b.id, "reason": "dup"},
        headers=staff_headers(adv),
    )
    assert resp.status_code == 403 and resp.get_json()["code"] == "auth.forbidden"


def test_merge_validation(
    client: Any, db_session: Any, tree: Any, make_staff: Any, make_customer: Any, staff_headers: Any
) -> None:
    manager = make_staff(tree.stores[0], "store_manager")
    a = _Ids(make_customer(tree.stores[0]).id)
    far = _Ids(make_customer(tree.stores[3]).id)
    h = staff_headers(manager)
    same = client.post(
        "/api/workbench/v1/customer-merges", json={"source_id": a.id, "target_id": a.id, "reason": "x1"}, headers=h
    )
    assert same.status_code == 422 and same.get_json()["code"] == "customer.merge_invalid"
    out_of_scope = client.post(
        "/api/workbench/v1/customer-merges", json={"source_id": far.id, "target_id": a.id, "reason": "x1"}, headers=h
    )
    assert out_of_scope.status_code == 404


def test_phone_reveal_is_audited_and_limited(
    client: Any, db_session: Any, tree: Any, make_staff: Any, make_customer: Any, staff_headers: Any
) -> None:
    adv = make_staff(tree.stores[0], "sales_advisor")
    marketing = make_staff(tree.regions[0], "marketing")
    c = make_customer(tree.stores[0], advisor=adv, phone="13800138000")
    listed = client.get("/api/workbench/v1/customers", headers=staff_headers(adv)).get_json()
    assert listed["items"][0]["phone"] == "138****8000"
    full = client.get(f"/api/workbench/v1/customers/{c.id}/phone", headers=staff_headers(adv))
    assert full.get_json() == {"phone": "13800138000"}
    entry = db_session.scalars(select(AuditLog)).one()
    assert (entry.action, entry.actor_id, entry.object_id) == ("customer.phone_revealed", str(adv.id), str(c.id))
    denied = client.get(f"/api/workbench/v1/customers/{c.id}/phone", headers=staff_headers(marketing))
    assert denied.status_code == 403 and denied.get_json()["code"] == "customer.phone_forbidden"
    found = client.post(
        "/api/workbench/v1/customers/search-by-phone", json={"phone": "138-0013-8000"}, headers=staff_headers(adv)
    )
    assert [i["id"] for i in found.get_json()] == [c.id]
    assert db_session.scalars(select(AuditLog.action).order_by(AuditLog.id)).all() == [
        "customer.phone_revealed",
        "customer.phone_searched",
    ]
    # Masked digits cannot be confirmed by searching without the right to see the number.
    probe = client.post(
        "/api/workbench/v1/customers/search-by-phone", json={"phone": "13800138000"}, headers=staff_headers(marketing)
    )
    assert probe.status_code == 403
