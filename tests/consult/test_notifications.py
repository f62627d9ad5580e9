"""Who hears of a consultation: the advisor by WeCom app message (received by the WeCom sandbox,
rate window in Redis), the owner by subscribe message when an advisor answers (one per answered
wait, only with a grant), all through the outbox after commit."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.notices.models import SubscribeNotice
from tests.consult.conftest import APP, REPLIED, WB, open_conv, owner_says, staff_says

pytestmark = [pytest.mark.redis]


@pytest.fixture(autouse=True)
def _redis_window(app: Any, monkeypatch: Any, redis_url: str, world: Any) -> None:
    """The per-recipient window of app messages lives in Redis, as in production."""
    import redis

    up = redis.Redis.from_url(redis_url)
    for key in up.scan_iter("dealerloop:wecom:notify:*"):
        up.delete(key)
    monkeypatch.setitem(app.extensions, "dealerloop.redis", up)


def _cards(sandbox: Any) -> list[tuple[str, str, str]]:
    return [
        (m["touser"], m["textcard"]["title"], m["textcard"]["description"])
        for m in sandbox.state.app_messages
        if m["msgtype"] == "textcard"
    ]


def test_the_assigned_advisor_is_told_of_each_new_wait(client: Any, world: Any, sandbox_reset: Any) -> None:
    conv = open_conv(client, world.owner, "service", text="保养多少钱？")
    cid = conv["id"]
    [(to, title, text)] = _cards(sandbox_reset)
    assert (to, title) == ("adv.service", "新咨询") and "陈先生" in text and "保养多少钱？" in text
    card = sandbox_reset.state.app_messages[0]["textcard"]
    assert card["url"].split("?msg=")[0].endswith(f"/workbench/consult/{cid}")
    owner_says(client, world.owner, cid, "急")  # still the same wait: no second message
    assert len(_cards(sandbox_reset)) == 1
    staff_says(client, world.service, cid, "680 元")
    owner_says(client, world.owner, cid, "那换机油呢")  # a new wait
    assert [c[0] for c in _cards(sandbox_reset)] == ["adv.service", "adv.service"]
    assert "那换机油呢" in _cards(sandbox_reset)[1][2]


def test_a_queued_conversation_tells_the_stores_advisors_of_its_topic(
    client: Any, world: Any, sandbox_reset: Any
) -> None:
    open_conv(client, world.walk_in, "new_car", text="有试驾车吗")
    assert sorted(c[0] for c in _cards(sandbox_reset)) == ["adv.sales", "adv.sales2"]
    sandbox_reset.state.app_messages.clear()
    open_conv(client, world.walk_in, "other", text="营业时间")
    assert sorted(c[0] for c in _cards(sandbox_reset)) == ["adv.ins", "adv.sales", "adv.sales2", "adv.service"]


def test_a_transfer_tells_the_new_advisor(client: Any, world: Any, sandbox_reset: Any) -> None:
    cid = open_conv(client, world.owner, "new_car", text="想贷款买车")["id"]
    resp = client.post(
        f"{WB}/conversations/{cid}/transfer",
        json={"advisor_id": world.insurance.id, "note": "贷款方案"},
        headers=world.sales.headers,
    )
    assert resp.status_code == 200, resp.get_json()
    assert [c[0] for c in _cards(sandbox_reset)] == ["adv.sales", "adv.ins"]
    assert "贷款方案" in _cards(sandbox_reset)[1][2]


def test_the_owner_gets_a_subscribe_message_per_answered_wait(
    client: Any, world: Any, db_session: Any, sandbox_reset: Any
) -> None:
    state = sandbox_reset.state
    state.add_user("o-consult-owner")
    state.set_subscribe_grants("o-consult-owner", REPLIED, 1)
    grant = client.post(
        "/api/app/v1/notices/grants", json={"results": {REPLIED: "accept"}}, headers=world.owner.headers
    )
    assert grant.status_code == 200 and grant.get_json()["grants"][REPLIED] == 1
    cid = open_conv(client, world.owner, "service", text="保养多少钱？")["id"]
    assert state.subscribe_messages == []
    staff_says(client, world.service, cid, "常规保养 680 元")
    [sent] = state.subscribe_messages
    assert sent["touser"] == "o-consult-owner" and sent["template_id"] == REPLIED
    assert sent["page"] == f"pages/consult/detail?id={cid}"
    assert sent["data"]["thing1"] == {"value": "维修保养"} and sent["data"]["thing2"] == {"value": "常规保养 680 元"}
    assert sent["data"]["thing3"] == {"value": "赵服务"}
    staff_says(client, world.service, cid, "还有问题随时问")  # not an answer to a wait: no notice
    owner_says(client, world.owner, cid, "好的谢谢")
    staff_says(client, world.service, cid, "不客气")  # an answer, but the owner's grant is used up
    assert len(state.subscribe_messages) == 1
    db_session.expire_all()
    statuses = db_session.scalars(
        select(SubscribeNotice.status)
        .where(SubscribeNotice.customer_id == world.owner.id, SubscribeNotice.template_setting.like("%CONSULT%"))
        .order_by(SubscribeNotice.id)
    ).all()
    assert statuses == ["sent", "no_grant"]
    mine = client.get(f"{APP}/conversations/{cid}", headers=world.owner.headers).get_json()
    assert mine["unread"] == 1  # writing marks what came before as read: only the last answer is new


def test_an_overdue_wait_alerts_the_answerer_and_the_store_manager_once(
    app: Any, client: Any, world: Any, db_session: Any, sandbox_reset: Any, staff_headers: Any, member_headers: Any
) -> None:
    from datetime import UTC, datetime

    from freezegun import freeze_time

    from backend.consult.jobs import alert_overdue_job
    from backend.platform.db import commit

    def run_job() -> int:
        with app.app_context():
            n = alert_overdue_job(db_session)
            commit(db_session)  # the app messages go out after commit (inline here)
        return n

    def overdue_cards() -> list[str]:
        return sorted(m["touser"] for m in sandbox_reset.state.app_messages if "超时" in m["textcard"]["title"])

    with freeze_time(datetime(2026, 12, 2, 1, 0, tzinfo=UTC)) as frozen:  # 09:00 Shanghai
        queued = client.post(
            f"{APP}/conversations",
            json={"topic": "new_car", "message": {"kind": "text", "text": "有现车吗"}},
            headers=member_headers(world.walk_in.obj),
        ).get_json()["id"]
        mine = client.post(
            f"{APP}/conversations",
            json={"topic": "service", "message": {"kind": "text", "text": "保养"}},
            headers=member_headers(world.owner.obj),
        ).get_json()["id"]
        frozen.move_to(datetime(2026, 12, 2, 1, 9, tzinfo=UTC))
        assert run_job() == 0 and overdue_cards() == []
        frozen.move_to(datetime(2026, 12, 2, 1, 11, tzinfo=UTC))
        assert run_job() == 2
        assert overdue_cards() == ["adv.sales", "adv.sales2", "adv.service", "mgr.store", "mgr.store"]
        assert run_job() == 0 and len(overdue_cards()) == 5  # once per wait
        # Answered, then a new wait that runs over: a new alert for that wait.
        answer = client.post(
            f"{WB}/conversations/{mine}/messages",
            json={"kind": "text", "text": "680 元"},
            headers=staff_headers(world.service.obj),
        )
        assert answer.status_code == 201
        client.post(
            f"{APP}/conversations/{mine}/messages",
            json={"kind": "text", "text": "那机油呢"},
            headers=member_headers(world.owner.obj),
        )
        frozen.move_to(datetime(2026, 12, 2, 1, 30, tzinfo=UTC))
        assert run_job() == 1
        assert overdue_cards().count("adv.service") == 2
    assert queued != mine
