"""GET /api/workbench/v1/wecom/app-messages — filters (kind, status, userid, corp_id),
paging, bad input and who may read it."""

from __future__ import annotations

from typing import Any

import pytest

from backend.platform.db import commit
from backend.wecom import notify
from tests.wecom.helpers import run_due_jobs

ADVISOR = "advisor.zhang"
OTHER = "advisor.li"
SEND = "/cgi-bin/message/send"
MESSAGES = "/api/workbench/v1/wecom/app-messages"


@pytest.fixture
def world(app: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> Any:
    corp = app.config["WECOM_CORP_ID"]
    admin = staff_headers(make_staff(tree.group, "group_admin", userid="admin"))
    make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR)
    make_staff(tree.stores[0], "sales_advisor", userid=OTHER)
    manager = staff_headers(make_staff(tree.stores[0], "store_manager", userid="mgr0"))
    advisor = staff_headers(make_staff(tree.stores[0], "sales_advisor", userid="adv9"))
    db_session.commit()
    return {"corp": corp, "admin": admin, "manager": manager, "advisor": advisor}


def _get(client: Any, headers: Any, **query: Any) -> Any:
    return client.get(MESSAGES, headers=headers, query_string=query)


def test_filters_by_kind_status_and_recipient(
    app: Any, client: Any, db_session: Any, sandbox_reset: Any, world: Any
) -> None:
    corp = world["corp"]
    sandbox_reset.state.set_fault("errcode", errcode=40058, service="wecom", path=SEND, count=1)
    with app.app_context():
        notify.weak_item(db_session, corp, "K1", [ADVISOR], "失败的")  # fails (40058)
        notify.new_lead(db_session, corp, "K2", ADVISOR, "陈先生", "官网")
        notify.lost_customer(db_session, corp, "K3", [OTHER], "刘女士", "王顾问")
        commit(db_session)
    run_due_jobs(app)
    admin = world["admin"]
    everything = _get(client, admin).get_json()
    assert [(m["kind"], m["status"], m["touser"], m["corp_id"]) for m in everything] == [
        ("lost_customer", "sent", [OTHER], corp),
        ("new_lead", "sent", [ADVISOR], corp),
        ("weak_item", "failed", [ADVISOR], corp),
    ]
    assert [m["kind"] for m in _get(client, admin, kind="new_lead").get_json()] == ["new_lead"]
    assert [m["kind"] for m in _get(client, admin, status="failed").get_json()] == ["weak_item"]
    assert [m["kind"] for m in _get(client, admin, userid=ADVISOR).get_json()] == ["new_lead", "weak_item"]
    assert [m["kind"] for m in _get(client, admin, userid=ADVISOR, status="sent").get_json()] == ["new_lead"]
    assert _get(client, admin, userid="zhang").get_json() == []  # no substring match
    assert _get(client, admin, userid="advisor%").get_json() == []  # no LIKE wildcard
    assert _get(client, admin, kind="new_lead", corp_id="wwOtherCorp").get_json() == []


def test_userid_with_corp_keeps_namesakes_apart(
    app: Any, client: Any, db_session: Any, sandbox_reset: Any, world: Any, monkeypatch: Any
) -> None:
    from tests.wecom.helpers import second_wecom_app

    corp = world["corp"]
    with second_wecom_app(app, sandbox_reset, monkeypatch) as (second, creds):
        other_corp = creds["WECOM_CORP_ID"]
        with app.app_context():
            notify.notify(db_session, corp, "new_consultation", "consult:7", [ADVISOR], text="甲")
            notify.notify(db_session, other_corp, "new_consultation", "consult:7", [ADVISOR], text="乙")  # 81013 there
            commit(db_session)
        run_due_jobs(app)
    admin = world["admin"]
    both = _get(client, admin, userid=ADVISOR).get_json()
    assert sorted((m["corp_id"], m["status"]) for m in both) == sorted([(corp, "sent"), (other_corp, "failed")])
    only_b = _get(client, admin, userid=ADVISOR, corp_id=other_corp).get_json()
    assert [(m["corp_id"], m["status"]) for m in only_b] == [(other_corp, "failed")]


def test_paging_and_bad_input(app: Any, client: Any, db_session: Any, sandbox_reset: Any, world: Any) -> None:
    corp = world["corp"]
    with app.app_context():
        for i in range(5):
            notify.weak_item(db_session, corp, f"P{i}", [ADVISOR], f"第{i}项")
        commit(db_session)
    admin = world["admin"]
    pages = [[m["id"] for m in _get(client, admin, limit=2, page=p).get_json()] for p in (1, 2, 3, 4)]
    assert [len(p) for p in pages] == [2, 2, 1, 0]
    flat = [i for p in pages for i in p]
    assert flat == sorted(flat, reverse=True) and len(set(flat)) == 5
    for bad in ({"limit": 0}, {"limit": 201}, {"page": 0}, {"page": -1}, {"status": "lost"}, {"limit": "x"}):
        resp = _get(client, admin, **bad)
        assert resp.status_code == 422, (bad, resp.status_code)


def test_only_group_admins_read_the_messages(app: Any, client: Any, world: Any) -> None:
    for who in ("manager", "advisor"):
        resp = _get(client, world[who])
        assert (resp.status_code, resp.get_json()["code"]) == (403, "auth.forbidden"), who
    assert client.get(MESSAGES).status_code == 401


def test_listed_message_exposes_no_content(
    app: Any, client: Any, db_session: Any, sandbox_reset: Any, world: Any
) -> None:
    """The list is delivery state; customer names in the text are not needed there."""
    with app.app_context():
        notify.lost_customer(db_session, world["corp"], "PII", [ADVISOR], "刘女士", "王顾问")
        commit(db_session)
    (m,) = _get(client, world["admin"]).get_json()
    assert "content" not in m and "刘女士" not in str(m)
