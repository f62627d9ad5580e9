"""QR check-in at the venue store: refusals with stable codes, the same scan replayed answers
the same, attendance points once; no-shows marked after the check-in window."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from freezegun import freeze_time
from sqlalchemy import func, select

from backend.events import service
from backend.platform.db import commit, db, utcnow
from backend.points.models import PointsLedger
from backend.touchpoints.models import Touchpoint
from tests.events.conftest import APP, WB, cancel, create_event, sign_up


def _qr(client: Any, owner: Any, reg_id: int) -> str:
    resp = client.get(f"{APP}/me/event-registrations/{reg_id}/qr", headers=owner.headers)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["token"]


def _scan(client: Any, headers: dict[str, str], event_id: int, token: str, **extra: Any) -> Any:
    return client.post(f"{WB}/events/{event_id}/check-ins", json={"token": token, **extra}, headers=headers)


def _code(resp: Any) -> tuple[int, str | None]:
    return resp.status_code, (resp.get_json() or {}).get("code")


def test_check_in_refusals_replays_and_points_once(
    app: Any, client: Any, db_session: Any, place: Any, make_owner: Any, sandbox_reset: Any
) -> None:
    now = utcnow().replace(microsecond=0)
    starts = now + timedelta(days=3)
    event = create_event(
        client,
        place.h(),
        capacity=2,
        max_party_size=1,
        starts_at=starts,
        ends_at=starts + timedelta(hours=3),
        attendance_points=50,
    )
    paid = create_event(
        client,
        place.h(),
        title="付费品鉴会",
        capacity=5,
        starts_at=starts,
        ends_at=starts + timedelta(hours=3),
        fee_kind="cash",
        fee_fen=9900,
    )
    a, a2, c, d, b = (make_owner(place.unit) for _ in range(5))
    ra, ra2 = (sign_up(client, o, event["id"]).get_json() for o in (a, a2))
    rd = sign_up(client, d, event["id"]).get_json()
    rc = sign_up(client, c, event["id"]).get_json()
    assert cancel(client, c, rc["id"]).status_code == 200
    rb = sign_up(client, b, paid["id"]).get_json()
    assert [r["state"] for r in (ra, ra2, rd, rb)] == ["confirmed", "confirmed", "waitlisted", "pending_payment"]

    # Staff of the venue store check in there (headers are issued at each call, under the frozen clock).
    with freeze_time(starts - timedelta(hours=2)) as frozen:
        early = _qr(client, a, ra["id"])
        assert _code(_scan(client, place.h(place.advisor), event["id"], early)) == (409, "event.checkin_too_early")
        assert _code(_scan(client, place.h(place.advisor), event["id"], early)) == (
            409,
            "event.checkin_too_early",
        )  # replay
        frozen.move_to(starts - timedelta(minutes=30))  # the window is open (one hour before)
        replay = _scan(client, place.h(place.advisor), event["id"], early)
        assert _code(replay) == (409, "event.checkin_too_early") and replay.get_json()["errors"]["replayed"] is True

        cases = [
            (event["id"], c, rc["id"], "event.checkin_cancelled"),
            (event["id"], d, rd["id"], "event.checkin_not_confirmed"),
            (paid["id"], b, rb["id"], "event.checkin_unpaid"),
            (paid["id"], a, ra["id"], "event.checkin_wrong_event"),
        ]
        for event_id, owner, reg_id, code in cases:
            assert _code(_scan(client, place.h(place.advisor), event_id, _qr(client, owner, reg_id))) == (409, code), (
                code
            )

        token = _qr(client, a, ra["id"])
        first = _scan(client, place.h(place.advisor), event["id"], token)
        assert first.status_code == 200, first.get_json()
        body = first.get_json()
        assert body["state"] == "checked_in" and body["checked_in_by"] == place.advisor.id
        again = _scan(client, place.h(place.advisor), event["id"], token)
        assert again.status_code == 200 and again.get_json() == body  # the same scan: the same answer
        assert _code(_scan(client, place.h(place.advisor), event["id"], _qr(client, a, ra["id"]))) == (
            409,
            "event.checkin_already",
        )
        frozen.tick(timedelta(minutes=5))  # the token has expired; its scan still replays
        assert _scan(client, place.h(place.advisor), event["id"], token).get_json() == body
        assert _code(_scan(client, place.h(place.advisor), event["id"], _qr(client, a, ra["id"])[:-2] + "xx")) == (
            422,
            "qr.invalid",
        )

        # Staff elsewhere do not see the event; staff above the store name the store.
        assert _code(_scan(client, place.h(place.other_manager), event["id"], token)) == (404, "event.not_found")
        assert _code(_scan(client, place.h(place.region_manager), event["id"], token)) == (422, "event.store_required")

        frozen.move_to(starts + timedelta(hours=3, minutes=1))
        assert _code(
            _scan(
                client, place.h(place.region_manager), event["id"], _qr(client, a2, ra2["id"]), store_id=place.unit.id
            )
        ) == (
            409,
            "event.checkin_too_late",
        )

    db_session.expire_all()
    earned = db_session.scalars(
        select(PointsLedger).where(PointsLedger.customer_id == a.id, PointsLedger.reason_code == "event_attended")
    ).all()
    assert [(p.delta, p.idempotency_key) for p in earned] == [(50, f"event_checkin:{event['id']}:{a.id}")]
    assert client.get(f"{APP}/points/account", headers=a.headers).get_json()["available"] == 50
    checked = select(func.count()).select_from(Touchpoint).where(Touchpoint.kind == "event_checked_in")
    assert db_session.scalar(checked) == 1

    # After the window: A2 never came — a no-show, once however often the job runs; D's wait lapses.
    later = starts + timedelta(hours=4)
    with app.app_context():
        s = db.session()
        assert service.mark_no_shows(s, later) == 1
        commit(s)
        assert service.mark_no_shows(s, later) == 0
        commit(s)
    states = {
        r["id"]: r["state"]
        for r in client.get(f"{WB}/events/{event['id']}/registrations", headers=place.h()).get_json()["items"]
    }
    assert states == {ra["id"]: "checked_in", ra2["id"]: "no_show", rd["id"]: "expired", rc["id"]: "cancelled"}
    no_show = select(func.count()).select_from(Touchpoint).where(Touchpoint.kind == "event_no_show")
    assert db_session.scalar(no_show) == 1


def test_a_scan_sent_three_times_is_one_scan_and_one_check_in(
    client: Any, db_session: Any, place: Any, make_owner: Any
) -> None:
    """The scan row is unique per (event, nonce); a resent scan reads the stored answer back."""
    now: datetime = utcnow()
    event = create_event(client, place.h(), capacity=3, checkin_opens_at=now - timedelta(minutes=5))
    owner = make_owner(place.unit)
    reg = sign_up(client, owner, event["id"]).get_json()
    token = _qr(client, owner, reg["id"])
    answers = [_scan(client, place.h(place.advisor), event["id"], token).status_code for _ in range(3)]
    assert answers == [200, 200, 200]
    from backend.events.models import EventCheckinScan

    assert db_session.scalar(select(func.count()).select_from(EventCheckinScan)) == 1


def test_check_in_reports_event_attended_to_campaigns_once(
    client: Any, db_session: Any, place: Any, make_owner: Any
) -> None:
    rule = client.post(
        f"{WB}/earning-rules",
        json={
            "name": "活动到场奖励",
            "kind": "action",
            "trigger": "event_attended",
            "points": 20,
            "valid_from": (utcnow() - timedelta(days=1)).isoformat(),
        },
        headers=place.h(place.marketing),
    )
    assert rule.status_code == 201, rule.get_json()
    event = create_event(
        client, place.h(), capacity=3, attendance_points=50, checkin_opens_at=utcnow() - timedelta(minutes=5)
    )
    owners = [make_owner(place.unit) for _ in range(2)]
    for owner in owners:
        reg = sign_up(client, owner, event["id"]).get_json()
        for _ in range(2):  # a second scan (new nonce) is refused and grants nothing more
            _scan(client, place.h(place.advisor), event["id"], _qr(client, owner, reg["id"]))
    from backend.campaigns.models import CampaignGrant

    for owner in owners:  # every attendee is granted once (the occurrence is per event and member)
        assert client.get(f"{APP}/points/account", headers=owner.headers).get_json()["available"] == 70
        grants = db_session.scalars(select(CampaignGrant).where(CampaignGrant.customer_id == owner.id)).all()
        assert [(g.rule_id, g.ref) for g in grants] == [
            (rule.get_json()["id"], f"event_checkin:{event['id']}:{owner.id}")
        ]
