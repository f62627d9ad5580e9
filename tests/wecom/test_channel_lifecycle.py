"""a channel's life after its contact way — late adds after a delete (attribution,
statistics, welcome with the template the deleted channel used), statistics by China day around
midnight UTC+8 including losses and the default window.

Written as review probes; kept as regression tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from backend.wecom.models import WeComFriend, WelcomeMessage
from backend.wecom.service import china_day
from tests.wecom.helpers import CHANNELS, ZHANG, channel_stats, contact_xml, post_channel, post_event

TEMPLATES = "/api/workbench/v1/wecom/welcome-templates"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    manager = make_staff(tree.stores[0], "store_manager", userid="mgr0")
    return {"sb": sandbox_reset, "store0": tree.stores[0].id, "h": staff_headers(manager)}


def ts(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())


def test_late_add_after_delete_is_attributed_counted_and_welcomed(client: Any, db_session: Any, world: Any) -> None:
    sb, h = world["sb"], world["h"]
    template = client.post(
        TEMPLATES, headers=h, json={"name": "欢迎", "store_id": world["store0"], "text": "您好，我是{advisor_name}"}
    ).get_json()
    channel = post_channel(client, h, world["store0"], [ZHANG], welcome_template_id=template["id"]).get_json()
    assert client.delete(f"{CHANNELS}/{channel['id']}", headers=h).status_code == 204
    # the template the deleted channel used can still be edited; the late welcome uses the edit
    assert client.patch(f"{TEMPLATES}/{template['id']}", headers=h, json={"text": "新欢迎语"}).status_code == 200

    # the customer scanned just before the delete; WeCom's event arrives after it
    sb.state.add_external_contact("wmLate1", "陈先生", follow_userid=ZHANG, state="store0-qr")
    code = sb.state.issue_welcome_code(ZHANG, "wmLate1")
    now = int(time.time())
    xml = contact_xml(sb, "add_external_contact", ZHANG, "wmLate1", now, State="store0-qr", WelcomeCode=code)
    assert post_event(client, sb, xml).data == b"success"

    db_session.expire_all()
    friend = db_session.scalars(select(WeComFriend).where(WeComFriend.external_userid == "wmLate1")).one()
    assert friend.channel_id == channel["id"]
    day = china_day(datetime.fromtimestamp(now, UTC)).isoformat()
    assert [(d["added"], d["lost"]) for d in channel_stats(client, h, channel["id"], day)] == [(1, 0)]
    assert [m["text"]["content"] for m in sb.state.welcome_messages] == ["新欢迎语"]
    assert db_session.scalars(select(WelcomeMessage.status)).all() == ["sent"]

    # a deleted channel's state stays taken (its late adds must stay unambiguous)
    again = post_channel(client, h, world["store0"], [ZHANG])
    assert (again.status_code, again.get_json()["code"]) == (409, "wecom.channel_state_taken")


def test_add_and_loss_either_side_of_china_midnight(client: Any, db_session: Any, world: Any) -> None:
    sb, h = world["sb"], world["h"]
    channel = post_channel(client, h, world["store0"], [ZHANG]).get_json()
    sb.state.add_external_contact("wmMid", "客户", follow_userid=ZHANG, state="store0-qr")
    add_at = ts(2026, 12, 5, 15, 59, 59)  # 2026-12-05 23:59:59 in China
    lost_at = add_at + 1  # 2026-12-06 00:00:00 in China
    for xml in (
        contact_xml(sb, "del_follow_user", ZHANG, "wmMid", lost_at),  # out of order on purpose
        contact_xml(sb, "add_external_contact", ZHANG, "wmMid", add_at, State="store0-qr"),
    ):
        assert post_event(client, sb, xml).data == b"success"
    stats = channel_stats(client, h, channel["id"], "2026-12-05", "2026-12-06")
    assert [(d["day"], d["added"], d["lost"], d["net"]) for d in stats] == [
        ("2026-12-05", 1, 0, 1),
        ("2026-12-06", 0, 1, -1),
    ]


def test_default_window_ends_on_today_in_china_not_in_utc(
    client: Any, db_session: Any, world: Any, monkeypatch: Any
) -> None:
    """At 16:30 UTC it is already tomorrow in China: the default window must include the add
    made 15 minutes earlier (00:15 China)."""
    from backend.wecom import admin

    sb, h = world["sb"], world["h"]
    channel = post_channel(client, h, world["store0"], [ZHANG]).get_json()
    sb.state.add_external_contact("wmWin", "客户", follow_userid=ZHANG, state="store0-qr")
    add_at = ts(2026, 12, 2, 16, 15)  # 2026-12-03 00:15 China
    assert post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, "wmWin", add_at, State="store0-qr"))
    monkeypatch.setattr(admin, "utcnow", lambda: datetime(2026, 12, 2, 16, 30, tzinfo=UTC))
    resp = client.get(f"{CHANNELS}/{channel['id']}/stats", headers=h)
    assert resp.status_code == 200
    rows = resp.get_json()
    assert len(rows) == 30 and rows[-1] == {"day": "2026-12-03", "added": 1, "lost": 0, "net": 1}


def test_stats_range_is_at_most_366_days(client: Any, world: Any) -> None:
    channel = post_channel(client, world["h"], world["store0"], [ZHANG]).get_json()
    url = f"{CHANNELS}/{channel['id']}/stats"
    ok = client.get(url, headers=world["h"], query_string={"date_from": "2024-01-01", "date_to": "2024-12-31"})
    assert ok.status_code == 200 and len(ok.get_json()) == 366  # a leap year
    too_long = client.get(url, headers=world["h"], query_string={"date_from": "2024-01-01", "date_to": "2025-01-01"})
    assert (too_long.status_code, too_long.get_json()["code"]) == (422, "wecom.stats_range_invalid")
