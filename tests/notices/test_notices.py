"""Subscribe notices shared by the features: grants reported by the app and counted per owner and
template, one message per grant through the real mini-program client against the sandbox."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import CustomerIdentity, IdentityKind
from backend.notices import service
from backend.notices.models import SubscribeGrant, SubscribeNotice
from backend.platform.db import commit
from backend.platform.jobs import OutboxJob
from backend.touchpoints.models import Touchpoint

pytestmark = [pytest.mark.usefixtures("app_ctx")]

REMINDER = "TPL_BOOKING_REMINDER"
CHANGED = "TPL_BOOKING_CHANGED"
DATA = {"thing1": {"value": "常规保养"}, "time2": {"value": "2026-12-03 10:00"}}


@pytest.fixture
def templates(app: Any, monkeypatch: Any) -> None:
    monkeypatch.setitem(app.config, "SUBSCRIBE_TEMPLATE_BOOKING_REMINDER", REMINDER)
    monkeypatch.setitem(app.config, "SUBSCRIBE_TEMPLATE_BOOKING_CHANGED", CHANGED)


def _grants(db_session: Any, customer_id: int) -> dict[str, int]:
    db_session.expire_all()
    return dict(
        db_session.execute(
            select(SubscribeGrant.template_id, SubscribeGrant.remaining)
            .join(CustomerIdentity, CustomerIdentity.value == SubscribeGrant.openid)
            .where(CustomerIdentity.customer_id == customer_id, CustomerIdentity.kind == IdentityKind.OPENID)
        ).all()
    )


def _notify(db_session: Any, customer_id: int, key: str) -> SubscribeNotice:
    notice = service.send_subscribe(
        db_session,
        customer_id=customer_id,
        template_setting="SUBSCRIBE_TEMPLATE_BOOKING_REMINDER",
        dedup_key=key,
        data=DATA,
        page="pages/booking/detail?id=1",
    )
    assert notice is not None
    commit(db_session)  # the sending job runs after commit (inline here)
    db_session.expire_all()
    return db_session.get(SubscribeNotice, notice.id)


def test_the_app_reports_accepts_and_a_retried_report_counts_once(
    client: Any, db_session: Any, make_customer: Any, member_headers: Any, templates: None
) -> None:
    owner = make_customer(openid="o-grant-1")
    headers = {**member_headers(owner), "Idempotency-Key": "subscribe-1"}
    body = {"results": {REMINDER: "accept", CHANGED: "reject"}}
    first = client.post("/api/app/v1/notices/grants", json=body, headers=headers)
    assert first.status_code == 200 and first.json["grants"] == {REMINDER: 1, CHANGED: 0}
    again = client.post("/api/app/v1/notices/grants", json=body, headers=headers)
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert _grants(db_session, owner.id) == {REMINDER: 1}
    second = client.post(
        "/api/app/v1/notices/grants", json={"results": {REMINDER: "accept"}}, headers=member_headers(owner)
    )
    assert second.json["grants"][REMINDER] == 2
    listed = client.get("/api/app/v1/notices/grants", headers=member_headers(owner))
    assert listed.json["grants"] == {REMINDER: 2, CHANGED: 0}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"results": {"TPL_NOT_OURS": "accept"}}, "notices.unknown_template"),
        ({"results": {REMINDER: "maybe"}}, "request.invalid"),
        ({"results": {}}, "request.invalid"),
        ({}, "request.invalid"),
    ],
)
def test_bad_grant_reports_are_refused_and_count_nothing(
    client: Any, db_session: Any, make_customer: Any, member_headers: Any, templates: None, body: Any, code: str
) -> None:
    owner = make_customer(openid="o-grant-bad")
    response = client.post("/api/app/v1/notices/grants", json=body, headers=member_headers(owner))
    assert response.status_code == 422 and response.json["code"] == code
    assert _grants(db_session, owner.id) == {}


def test_a_notice_with_a_grant_is_sent_once_and_uses_the_grant(
    db_session: Any, make_customer: Any, sandbox_reset: Any, templates: None
) -> None:
    state = sandbox_reset.state
    owner = make_customer(openid="o-notice-ok")
    state.add_user("o-notice-ok")
    state.set_subscribe_grants("o-notice-ok", REMINDER, 1)
    service.record_grants(db_session, owner.id, {REMINDER: "accept"})
    notice = _notify(db_session, owner.id, "booking:1:reminder-day-before")
    assert notice.status == "sent" and notice.template_id == REMINDER and notice.sent_at is not None
    [message] = state.subscribe_messages
    assert message["touser"] == "o-notice-ok" and message["data"] == DATA
    assert message["page"] == "pages/booking/detail?id=1"
    assert _grants(db_session, owner.id) == {REMINDER: 0}
    touchpoint = db_session.scalars(select(Touchpoint).where(Touchpoint.source_ref == f"notice:{notice.id}")).one()
    assert touchpoint.kind == "notice_sent" and touchpoint.customer_id == owner.id
    # The same decision again records nothing; the job again sends nothing.
    assert (
        service.send_subscribe(
            db_session,
            customer_id=owner.id,
            template_setting="SUBSCRIBE_TEMPLATE_BOOKING_REMINDER",
            dedup_key="booking:1:reminder-day-before",
            data=DATA,
        )
        is None
    )
    assert service.deliver(db_session, notice.id) == "skipped"
    assert len(state.subscribe_messages) == 1


def test_without_a_counted_grant_nothing_is_sent(
    db_session: Any, make_customer: Any, sandbox_reset: Any, templates: None
) -> None:
    owner = make_customer(openid="o-notice-none")
    sandbox_reset.state.add_user("o-notice-none")
    sandbox_reset.state.set_subscribe_grants("o-notice-none", REMINDER, 1)  # WeChat would take it
    notice = _notify(db_session, owner.id, "booking:2:confirmed")
    assert notice.status == "no_grant" and notice.errcode is None
    assert sandbox_reset.state.subscribe_messages == []
    assert sandbox_reset.state.received("/cgi-bin/message/subscribe/send", service="wechat") == []


def test_43101_is_final_and_consumes_nothing(
    db_session: Any, make_customer: Any, sandbox_reset: Any, templates: None
) -> None:
    owner = make_customer(openid="o-notice-43101")
    sandbox_reset.state.add_user("o-notice-43101")  # WeChat holds no grant for it
    service.record_grants(db_session, owner.id, {REMINDER: "accept"})
    notice = _notify(db_session, owner.id, "booking:3:confirmed")
    assert (notice.status, notice.errcode) == ("no_grant", 43101)
    assert _grants(db_session, owner.id) == {REMINDER: 1}
    job = db_session.scalars(select(OutboxJob).where(OutboxJob.name == "notices.send")).one()
    assert job.status == "done" and job.attempts == 1


def test_an_upstream_failure_is_retried_and_the_grant_is_kept_until_sent(
    app: Any, db_session: Any, make_customer: Any, sandbox_reset: Any, templates: None
) -> None:
    state = sandbox_reset.state
    owner = make_customer(openid="o-notice-5xx")
    state.add_user("o-notice-5xx")
    state.set_subscribe_grants("o-notice-5xx", REMINDER, 1)
    service.record_grants(db_session, owner.id, {REMINDER: "accept"})
    state.set_fault("down", service="wechat", path="/cgi-bin/message/subscribe/send", count=1)
    notice = _notify(db_session, owner.id, "booking:4:changed")
    assert notice.status == "pending"
    assert _grants(db_session, owner.id) == {REMINDER: 1}  # the failed try rolled its take back
    job = db_session.scalars(select(OutboxJob).where(OutboxJob.name == "notices.send")).one()
    assert job.status != "done" and job.attempts == 1
    from backend.platform.jobs import execute

    assert execute(job.id, app=app) == "done"
    db_session.expire_all()
    assert db_session.get(SubscribeNotice, notice.id).status == "sent"
    assert _grants(db_session, owner.id) == {REMINDER: 0}
    assert len(state.subscribe_messages) == 1


def test_no_template_or_no_openid_is_recorded_not_sent(
    app: Any, db_session: Any, make_customer: Any, sandbox_reset: Any, monkeypatch: Any
) -> None:
    monkeypatch.setitem(app.config, "SUBSCRIBE_TEMPLATE_BOOKING_REMINDER", "")
    owner = make_customer(openid="o-notice-tpl")
    assert _notify(db_session, owner.id, "booking:5:r").status == "no_template"
    monkeypatch.setitem(app.config, "SUBSCRIBE_TEMPLATE_BOOKING_REMINDER", REMINDER)
    wecom_only = make_customer()
    assert _notify(db_session, wecom_only.id, "booking:6:r").status == "no_openid"
    assert sandbox_reset.state.subscribe_messages == []


def test_the_owner_sees_their_own_notices_only(
    client: Any, db_session: Any, make_customer: Any, member_headers: Any, sandbox_reset: Any, templates: None
) -> None:
    owner = make_customer(openid="o-notice-list")
    other = make_customer(openid="o-notice-other")
    _notify(db_session, owner.id, "booking:7:r")
    _notify(db_session, other.id, "booking:8:r")
    response = client.get("/api/app/v1/notices", headers=member_headers(owner))
    assert response.status_code == 200
    assert [n["status"] for n in response.json["items"]] == ["no_grant"]
