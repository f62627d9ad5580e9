"""Round robin and escalation under real concurrency: threads on MariaDB, each request or job
with its own connection and transaction."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.leads.models import Lead
from backend.platform.db import commit, db, utcnow
from backend.platform.tokens import issue_access_token
from backend.touchpoints.models import Touchpoint
from backend.wecom.models import AppMessage
from tests.threads import run_threads

N = 12


@pytest.mark.mariadb
@pytest.mark.dbcommit
def test_concurrent_leads_are_spread_evenly_and_escalated_once(
    app: Any, tree: Any, make_staff: Any, sandbox_reset: Any
) -> None:
    from backend.customers.models import Customer

    store_id = tree.stores[0].id
    advisors = [make_staff(tree.stores[0], "sales_advisor", userid=f"rr.sales{i}").id for i in range(3)]
    make_staff(tree.stores[0], "store_manager", userid="rr.manager")
    with app.app_context():
        s = db.session()
        customers = [Customer(name=f"并发车主{i}", home_store_id=store_id) for i in range(N)]
        s.add_all(customers)
        s.commit()
        ids = [c.id for c in customers]
    tokens = [issue_access_token(app.config["SECRET_KEY"], "owner", cid, 900) for cid in ids]
    client = app.test_client()

    def submit(i: int) -> Any:
        return client.post(
            "/api/app/v1/leads",
            json={"type": "new_car", "series": "ID.4"},
            headers={"Authorization": f"Bearer {tokens[i]}", "Idempotency-Key": f"rr-{i}"},
        )

    results = run_threads(N, submit)
    statuses = [getattr(r, "status_code", repr(r)) for r in results]
    assert statuses == [201] * N, statuses
    with app.app_context():
        s = db.session()
        assigned = s.scalars(select(Lead.advisor_id).where(Lead.store_id == store_id)).all()
        assert len(assigned) == N and None not in assigned
        assert Counter(assigned) == {a: N // len(advisors) for a in advisors}
        sent = s.scalars(select(AppMessage.touser).where(AppMessage.kind == "new_lead")).all()
        assert sorted(u[0] for u in sent) == sorted(f"rr.sales{advisors.index(a)}" for a in assigned)
    assert len([m for m in sandbox_reset.state.app_messages if m["touser"].startswith("rr.sales")]) == N

    # The escalation job run twice at once (two workers) escalates each lead once.
    later = utcnow() + timedelta(hours=2)

    def sweep(_i: int) -> int:
        from backend.leads import service

        with app.app_context():
            session = db.session()
            done = service.escalate_due(session, later)
            commit(session)
            return done

    escalated = run_threads(2, sweep)
    assert sum(escalated) == N, escalated
    with app.app_context():
        s = db.session()
        assert s.scalar(select(func.count()).select_from(Lead).where(Lead.escalated_at.is_not(None))) == N
        kinds = select(func.count()).select_from(Touchpoint).where(Touchpoint.kind == "lead_escalated")
        assert s.scalar(kinds) == N
    assert [m["touser"] for m in sandbox_reset.state.app_messages].count("rr.manager") == N


@pytest.mark.mariadb
@pytest.mark.dbcommit
def test_concurrent_duplicate_submits_make_one_lead(app: Any, tree: Any, make_staff: Any, sandbox_reset: Any) -> None:
    from backend.customers.models import Car, Customer

    make_staff(tree.stores[0], "service_advisor", userid="dup.service")
    with app.app_context():
        s = db.session()
        customer = Customer(name="连点车主", home_store_id=tree.stores[0].id)
        s.add(customer)
        s.flush()
        car = Car(customer_id=customer.id, vin="LFV2A21K7G9000001")
        s.add(car)
        s.commit()
        customer_id, car_id = customer.id, car.id
    token = issue_access_token(app.config["SECRET_KEY"], "owner", customer_id, 900)
    client = app.test_client()
    body = {
        "type": "accident",
        "car_id": car_id,
        "location": {"address": "广州市天河路385号"},
        "photos": ["https://cdn.example.com/a.jpg"],
        "injuries": True,
        "drivable": False,
    }

    def tap(i: int) -> Any:
        # Six taps: four with their own keys (new requests), two sharing one key (a retry).
        key = f"dup-{i}" if i < 4 else "dup-retry"
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
        return client.post("/api/app/v1/leads", json=body, headers=headers)

    results = run_threads(6, tap)
    answers = [(r.status_code, r.get_json().get("code")) for r in results]
    created = [r.get_json()["id"] for r in results if r.status_code == 201]
    assert len(set(created)) == 1, answers  # one lead; a replayed retry shows the same one
    assert all(a == (201, None) or a[1] in ("lead.duplicate", "request.idempotency_in_progress") for a in answers)
    with app.app_context():
        s = db.session()
        assert s.scalar(select(func.count()).select_from(Lead).where(Lead.customer_id == customer_id)) == 1
    assert [m["touser"] for m in sandbox_reset.state.app_messages] == ["dup.service"]
