"""Real threads against MariaDB: nothing doubled, nothing lost under concurrent requests."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from backend.customers.models import Car, Customer, CustomerIdentity
from backend.platform.db import db
from backend.touchpoints.models import Touchpoint
from backend.touchpoints.service import profile_of, record
from tests.threads import count_committed, run_threads

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


def test_concurrent_first_logins_create_one_member(app: Any, sandbox_reset: Any) -> None:
    codes = [sandbox_reset.state.issue_login_code("o-race", "u-race") for _ in range(6)]
    client = app.test_client()
    results = run_threads(6, lambda i: client.post("/api/app/v1/auth/login", json={"code": codes[i]}))
    statuses = [r.status_code for r in results]
    assert statuses == [200] * 6, [r.get_json() for r in results]
    assert len({r.get_json()["customer_id"] for r in results}) == 1
    assert count_committed(app, Customer) == 1
    assert count_committed(app, CustomerIdentity) == 2


def test_concurrent_refresh_with_one_token_succeeds_once(app: Any, sandbox_reset: Any) -> None:
    client = app.test_client()
    tokens = client.post(
        "/api/app/v1/auth/login", json={"code": sandbox_reset.state.issue_login_code("o-ref")}
    ).get_json()
    results = run_threads(
        5, lambda i: client.post("/api/app/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 401, 401, 401, 401], [r.get_json() for r in results]


def test_same_touchpoint_recorded_concurrently_is_one_row(app: Any) -> None:
    with app.app_context():
        s = db.session()
        customer = Customer(name="并发")
        s.add(customer)
        s.commit()
        cid = customer.id

    def write(i: int) -> int:
        with app.app_context():
            s = db.session()
            tp = record(
                s,
                customer_id=cid,
                kind="friend_added",
                channel="wecom",
                source="wecom_callback",
                source_ref="wecom:add:dup",
            )
            s.commit()
            return tp.id

    ids = run_threads(8, write)
    assert all(isinstance(i, int) for i in ids), ids
    assert len(set(ids)) == 1
    assert count_committed(app, Touchpoint) == 1
    with app.app_context():
        assert profile_of(db.session(), cid)["touchpoint_count"] == 1


def test_concurrent_touchpoints_lose_no_counter_update(app: Any) -> None:
    with app.app_context():
        s = db.session()
        customer = Customer(name="计数")
        s.add(customer)
        s.commit()
        cid = customer.id

    def write(i: int) -> None:
        with app.app_context():
            s = db.session()
            for n in range(5):
                record(s, customer_id=cid, kind="message_sent", channel="wecom", source="t", source_ref=f"c:{i}:{n}")
                s.commit()

    errors = [r for r in run_threads(6, write) if r is not None]
    assert not errors, errors
    with app.app_context():
        profile = profile_of(db.session(), cid)
    assert profile["touchpoint_count"] == 30
    assert profile["counts_by_kind"] == {"message_sent": 30}


def test_concurrent_idempotent_creates_make_one_car(app: Any) -> None:
    from backend.platform.tokens import issue_access_token

    with app.app_context():
        s = db.session()
        customer = Customer(name="幂等")
        s.add(customer)
        s.commit()
        token = issue_access_token(app.config["SECRET_KEY"], "owner", customer.id, 900)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "car-race"}
    results = run_threads(
        5, lambda i: client.post("/api/app/v1/me/cars", json={"vin": "LFV2A21K7G3000001"}, headers=headers)
    )
    statuses = sorted(r.status_code for r in results)
    assert set(statuses) <= {201, 409}, [r.get_json() for r in results]
    assert statuses.count(201) >= 1
    created = {r.get_json()["id"] for r in results if r.status_code == 201}
    assert len(created) == 1  # replays return the same car
    assert count_committed(app, Car) == 1


def test_write_racing_a_merge_lands_on_the_surviving_customer(app: Any) -> None:
    from backend.customers.service import merge_customers
    from backend.platform.actors import SystemActor

    with app.app_context():
        s = db.session()
        source, target = Customer(name="源"), Customer(name="目标")
        s.add_all([source, target])
        s.commit()
        sid, tid = source.id, target.id
    merge_locked, let_merge_commit = threading.Event(), threading.Event()

    def merge() -> None:
        with app.app_context():
            s = db.session()
            merge_customers(s, SystemActor("test"), sid, tid, "race")
            merge_locked.set()
            let_merge_commit.wait(10)
            s.commit()
            db.session.remove()

    def callback() -> int:
        merge_locked.wait(10)
        with app.app_context():
            s = db.session()
            # The callback resolved the customer before the merge committed: it still says `sid`.
            threading.Timer(0.5, let_merge_commit.set).start()
            tp = record(s, customer_id=sid, kind="message_received", channel="wecom", source="t", source_ref="race:1")
            s.commit()
            customer_id = tp.customer_id
            db.session.remove()
            return customer_id

    merger = threading.Thread(target=merge)
    merger.start()
    landed_on = callback()
    merger.join(15)
    assert landed_on == tid
    with app.app_context():
        assert profile_of(db.session(), tid)["counts_by_kind"].get("message_received") == 1


def test_a_job_executed_twice_at_once_has_its_effect_once(app: Any) -> None:
    import uuid

    from backend.platform.jobs import OutboxJob, execute, job

    @job("test.concurrent_effect")
    def effect(session: Any, customer_id: int) -> None:
        record(
            session,
            customer_id=customer_id,
            kind="follow_up_done",
            channel="system",
            source="t",
            source_ref=f"effect:{uuid.uuid4().hex}",
        )

    with app.app_context():
        s = db.session()
        customer = Customer(name="作业")
        s.add(customer)
        s.flush()
        row = OutboxJob(name="test.concurrent_effect", args={"customer_id": customer.id}, queue="default")
        s.add(row)
        s.commit()
        row_id, cid = row.id, customer.id
    results = run_threads(4, lambda i: execute(row_id, app=app))
    assert sorted(results) == ["done", "skipped", "skipped", "skipped"], results
    assert count_committed(app, Touchpoint, Touchpoint.customer_id == cid) == 1


def test_concurrent_logins_stitching_one_person_all_succeed(app: Any, sandbox_reset: Any) -> None:
    """A member who first logged in without a unionid, and a WeCom contact holding that
    unionid: four logins at once now carry it. One merge, one live customer, every login
    answered with the member: no deadlock (identity inserts used to take shared locks on the
    customer rows that the merge then asked for exclusively) and no 422 for a login whose merge
    meets the one committed meanwhile."""
    from backend.customers.models import CustomerMerge, IdentityKind

    client = app.test_client()
    first = client.post("/api/app/v1/auth/login", json={"code": sandbox_reset.state.issue_login_code("o-stitch")})
    assert first.status_code == 200
    with app.app_context():
        session = db.session()
        contact = Customer(name="企微客户")
        session.add(contact)
        session.flush()
        session.add(CustomerIdentity(customer_id=contact.id, kind=IdentityKind.UNIONID, value="u-stitch"))
        session.commit()
    codes = [sandbox_reset.state.issue_login_code("o-stitch", "u-stitch") for _ in range(4)]
    results = run_threads(4, lambda i: client.post("/api/app/v1/auth/login", json={"code": codes[i]}))
    assert [r.status_code for r in results] == [200] * 4, [r.get_json() for r in results]
    assert {r.get_json()["customer_id"] for r in results} == {first.get_json()["customer_id"]}
    assert count_committed(app, CustomerMerge) == 1
    assert count_committed(app, Customer, Customer.merged_into_id.is_(None)) == 1
