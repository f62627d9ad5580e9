"""Response times over HTTP with frozen time: first response and each reply measured in wall-clock
and store business time (fallback hours 08:30–18:00 Asia/Shanghai), the SLA deadline and the
overdue inbox, resolution on close, and the per-response facts KPIs read by SQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from freezegun import freeze_time
from sqlalchemy import select, text

from backend.consult.business_time import SHANGHAI
from backend.touchpoints.models import Touchpoint
from tests.consult.conftest import APP, WB

DAY = "2026-12-02"  # a Wednesday


def at(day: str, hhmm: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=SHANGHAI).astimezone(UTC)


class Clock:
    """Frozen time plus fresh tokens at each moment (a token issued 'in the future' is refused)."""

    def __init__(self, frozen: Any, staff_headers: Any, member_headers: Any) -> None:
        self.frozen, self.staff_headers, self.member_headers = frozen, staff_headers, member_headers

    def go(self, when: datetime) -> None:
        self.frozen.move_to(when)

    def staff(self, person: Any) -> dict[str, str]:
        return self.staff_headers(person.obj)

    def owner(self, person: Any) -> dict[str, str]:
        return self.member_headers(person.obj)


def _open(client: Any, clock: Clock, who: Any, topic: str = "service", text: str = "保养多少钱？") -> int:
    body = {"topic": topic, "message": {"kind": "text", "text": text}}
    resp = client.post(f"{APP}/conversations", json=body, headers=clock.owner(who))
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


def _say(client: Any, clock: Clock, who: Any, cid: int, staff: bool, text: str = "好的") -> Any:
    base, headers = (WB, clock.staff(who)) if staff else (APP, clock.owner(who))
    resp = client.post(f"{base}/conversations/{cid}/messages", json={"kind": "text", "text": text}, headers=headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def _detail(client: Any, clock: Clock, who: Any, cid: int) -> dict[str, Any]:
    return client.get(f"{WB}/conversations/{cid}", headers=clock.staff(who)).get_json()


def _overdue(client: Any, clock: Clock, who: Any) -> list[int]:
    items = client.get(f"{WB}/inbox?box=overdue", headers=clock.staff(who)).get_json()["items"]
    return [c["id"] for c in items]


def test_first_response_and_replies_in_business_time(
    client: Any, world: Any, db_session: Any, staff_headers: Any, member_headers: Any
) -> None:
    with freeze_time(at(DAY, "09:00")) as frozen:
        clock = Clock(frozen, staff_headers, member_headers)
        cid = _open(client, clock, world.owner)
        detail = _detail(client, clock, world.service, cid)
        assert detail["awaiting_since"].startswith("2026-12-02T01:00:00")
        assert detail["due_at"].startswith("2026-12-02T01:10:00") and detail["overdue"] is False
        # A second owner message does not restart the clock.
        clock.go(at(DAY, "09:02"))
        _say(client, clock, world.owner, cid, staff=False, text="是帕萨特")
        clock.go(at(DAY, "09:04"))
        answer = _say(client, clock, world.service, cid, staff=True, text="常规保养 680 元")
        detail = _detail(client, clock, world.service, cid)
        assert detail["first_response_seconds"] == 240 and detail["first_response_business_seconds"] == 240
        assert detail["awaiting_since"] is None and detail["due_at"] is None and detail["response_count"] == 1
        # Late in the day; the answer comes the next morning: 5 + 5 business minutes.
        clock.go(at(DAY, "17:55"))
        _say(client, clock, world.owner, cid, staff=False, text="明天能做吗")
        assert _detail(client, clock, world.service, cid)["due_at"].startswith("2026-12-03T00:35:00")
        clock.go(at("2026-12-03", "08:35"))
        _say(client, clock, world.service, cid, staff=True, text="可以，九点到店")
        # The advisor writes again without an owner message in between: not a response.
        clock.go(at("2026-12-03", "08:36"))
        _say(client, clock, world.service, cid, staff=True, text="记得带保养手册")
        facts = client.get(f"{WB}/conversations/{cid}/responses", headers=clock.staff(world.service)).get_json()
    rows = [(r["kind"], r["seconds"], r["business_seconds"], r["within_sla"], r["advisor_id"]) for r in facts["items"]]
    assert rows == [
        ("first_response", 240, 240, True, world.service.id),
        ("reply", 14 * 3600 + 40 * 60, 600, True, world.service.id),
    ]
    assert facts["items"][0]["message_id"] == answer["id"] and facts["items"][0]["sla_seconds"] == 600
    # Each response is a touchpoint of its own, with the customer, advisor and store.
    tps = db_session.scalars(select(Touchpoint).where(Touchpoint.kind == "consult_responded").order_by(Touchpoint.id))
    assert [
        (t.customer_id, t.advisor_id, t.store_id, t.payload["response_kind"], t.payload["business_seconds"])
        for t in tps
    ] == [
        (world.owner.id, world.service.id, world.store.id, "first_response", 240),
        (world.owner.id, world.service.id, world.store.id, "reply", 600),
    ]


def test_the_overdue_inbox_follows_business_hours(
    client: Any, world: Any, staff_headers: Any, member_headers: Any
) -> None:
    with freeze_time(at(DAY, "17:58")) as frozen:
        clock = Clock(frozen, staff_headers, member_headers)
        late = _open(client, clock, world.walk_in, "new_car", text="晚上能看车吗")
        clock.go(at(DAY, "18:30"))  # the store is closed: 2 business minutes used, not overdue yet
        assert _overdue(client, clock, world.sales) == []
        clock.go(at("2026-12-03", "08:37"))
        assert _overdue(client, clock, world.sales) == []
        clock.go(at("2026-12-03", "08:38"))  # 2 + 8 = 10 business minutes
        assert _overdue(client, clock, world.sales) == [late]
        assert _overdue(client, clock, world.manager) == [late]
        assert _overdue(client, clock, world.foreign_advisor) == []
        assert _detail(client, clock, world.manager, late)["overdue"] is True
        clock.go(at("2026-12-03", "08:45"))
        _say(client, clock, world.sales, late, staff=True, text="您好，可以的")  # claims and answers
        assert _overdue(client, clock, world.sales) == []
        [fact] = client.get(f"{WB}/conversations/{late}/responses", headers=clock.staff(world.sales)).get_json()[
            "items"
        ]
    assert fact["business_seconds"] == 17 * 60 and fact["within_sla"] is False and fact["advisor_id"] == world.sales.id


def test_a_store_sla_setting_moves_the_deadline(
    client: Any, world: Any, staff_headers: Any, member_headers: Any
) -> None:
    with freeze_time(at(DAY, "09:00")) as frozen:
        clock = Clock(frozen, staff_headers, member_headers)
        url = f"{WB}/stores/{world.store.id}/sla"
        assert client.put(url, json={"sla_minutes": 30}, headers=clock.staff(world.sales)).status_code == 403
        resp = client.put(url, json={"sla_minutes": 30}, headers=clock.staff(world.manager))
        assert resp.status_code == 200 and resp.get_json() == {"store_id": world.store.id, "sla_minutes": 30}
        assert client.put(url, json={"sla_minutes": 0}, headers=clock.staff(world.manager)).status_code == 422
        other = f"{WB}/stores/{world.other_store.id}/sla"
        assert client.put(other, json={"sla_minutes": 5}, headers=clock.staff(world.manager)).status_code == 404
        cid = _open(client, clock, world.owner)
        assert _detail(client, clock, world.service, cid)["due_at"].startswith("2026-12-02T01:30:00")


def test_resolution_is_stored_on_close_and_kpis_are_plain_sql(
    client: Any, world: Any, db_session: Any, staff_headers: Any, member_headers: Any
) -> None:
    with freeze_time(at(DAY, "17:00")) as frozen:
        clock = Clock(frozen, staff_headers, member_headers)
        one = _open(client, clock, world.owner, "service")
        two = _open(client, clock, world.owner, "new_car", text="新车")
        clock.go(at(DAY, "17:03"))
        _say(client, clock, world.service, one, staff=True)
        clock.go(at(DAY, "17:20"))
        _say(client, clock, world.sales, two, staff=True)
        clock.go(at("2026-12-03", "09:00"))
        closed = client.post(f"{WB}/conversations/{one}/close", json={}, headers=clock.staff(world.service))
    assert closed.status_code == 200
    body = closed.get_json()
    assert body["status"] == "closed" and body["closed_by"] == "staff"
    assert body["resolution_seconds"] == 16 * 3600 and body["resolution_business_seconds"] == 3600 + 1800
    db_session.expire_all()
    # The advisor KPI as the reports will compute it: plain SQL over the fact rows.
    kpis = db_session.execute(
        text(
            "SELECT advisor_id, COUNT(*), AVG(business_seconds), SUM(CASE WHEN within_sla THEN 1 ELSE 0 END)"
            " FROM consult_response WHERE kind = 'first_response' GROUP BY advisor_id ORDER BY advisor_id"
        )
    ).all()
    assert [(a, n, float(avg), int(ok)) for a, n, avg, ok in kpis] == [
        (world.sales.id, 1, 1200.0, 0),
        (world.service.id, 1, 180.0, 1),
    ]
