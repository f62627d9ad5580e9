"""Channels and tags with several corps configured: a member of a second corp's app (corp B)
creates channels in corp B, with corp B's advisors, and marks and lists corp B's tags; a group
admin of the primary corp keeps working in the primary corp; the manual tag sync reads every
configured corp's library."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.platform.jobs import OutboxJob
from backend.wecom.models import WeComChannel, WeComFriendTag
from tests.wecom.helpers import corp_b_world, run_due_jobs

WB = "/api/workbench/v1"
ADD_CONTACT_WAY = "/cgi-bin/externalcontact/add_contact_way"
MARK_TAG = "/cgi-bin/externalcontact/mark_tag"
TAG_LIST = "/cgi-bin/externalcontact/get_corp_tag_list"


def channel_body(store_id: int, userids: list[str]) -> dict[str, Any]:
    return {"name": "B店活码", "kind": "store", "state": "storeB-qr", "userids": userids, "store_id": store_id}


def tags_url(w: dict[str, Any]) -> str:
    return f"{WB}/wecom/customers/{w['friend_b'].customer_id}/tags"


def test_a_corp_b_manager_creates_the_channel_in_corp_b(
    app: Any,
    client: Any,
    db_session: Any,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
    monkeypatch: Any,
) -> None:
    """The channel is corp B's, and its contact way is made by corp B's app, not the primary's."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch, a_tag=True) as w:
        body = channel_body(tree.stores[1].id, ["adv.two"])
        resp = client.post(f"{WB}/wecom/channels", headers=staff_headers(w["manager_b"]), json=body)
        assert resp.status_code == 201, resp.get_json()
        db_session.expire_all()
        channel = db_session.get(WeComChannel, resp.get_json()["id"])
        assert (channel.corp_id, channel.userids) == (w["corp_b"], ["adv.two"])
        assert [c["json"]["user"] for c in w["second"].state.received(ADD_CONTACT_WAY)] == [["adv.two"]]
        assert not sandbox_reset.state.received(ADD_CONTACT_WAY)


def test_a_channels_advisors_are_members_of_the_actors_corp(
    app: Any,
    client: Any,
    db_session: Any,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
    monkeypatch: Any,
) -> None:
    """A corp B manager cannot name a primary-corp advisor (nor a group admin of the primary
    corp a corp B one): a userid means nothing in another corp's WeCom."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch, a_tag=True) as w:
        store_id = tree.stores[1].id
        by_b = client.post(
            f"{WB}/wecom/channels",
            headers=staff_headers(w["manager_b"]),
            json=channel_body(store_id, ["advisor.zhang"]),
        )
        assert (by_b.status_code, by_b.get_json()["code"]) == (422, "wecom.userid_unknown"), by_b.get_json()
        assert by_b.get_json()["errors"] == {"userids": ["advisor.zhang"]}
        by_admin = client.post(
            f"{WB}/wecom/channels", headers=staff_headers(w["admin"]), json=channel_body(store_id, ["adv.two"])
        )
        assert (by_admin.status_code, by_admin.get_json()["code"]) == (422, "wecom.userid_unknown")
        db_session.expire_all()
        assert db_session.scalars(select(WeComChannel)).all() == []
        assert not w["second"].state.received(ADD_CONTACT_WAY)
        assert not sandbox_reset.state.received(ADD_CONTACT_WAY)


def test_a_corp_b_manager_marks_a_corp_b_customers_tags_through_corp_b(
    app: Any,
    client: Any,
    db_session: Any,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
    monkeypatch: Any,
) -> None:
    """`mark_tag` goes to corp B's app, as the relation's advisor, and the tag is recorded on
    the corp B relation."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch, a_tag=True) as w:
        resp = client.post(tags_url(w), headers=staff_headers(w["manager_b"]), json={"add_tag_ids": [w["b_tag"]]})
        assert resp.status_code == 200, resp.get_json()
        assert (resp.get_json()["userid"], resp.get_json()["tag_ids"]) == ("adv.two", [w["b_tag"]])
        calls = w["second"].state.received(MARK_TAG)
        assert [c["json"] for c in calls] == [
            {"userid": "adv.two", "external_userid": "wmSecondCorp1", "add_tag": [w["b_tag"]]}
        ]
        assert not sandbox_reset.state.received(MARK_TAG)
        db_session.expire_all()
        recorded = db_session.scalars(select(WeComFriendTag.tag_id).where(WeComFriendTag.friend_id == w["friend_b"].id))
        assert set(recorded) == {w["b_tag"]}


def test_tags_are_checked_against_the_actors_corps_library(
    app: Any,
    client: Any,
    db_session: Any,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
    monkeypatch: Any,
) -> None:
    """A primary-corp tag id is unknown to corp B: refused before anything is sent."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch, a_tag=True) as w:
        resp = client.post(tags_url(w), headers=staff_headers(w["manager_b"]), json={"add_tag_ids": [w["a_tag"]]})
        assert (resp.status_code, resp.get_json()["code"]) == (422, "wecom.tag_unknown"), resp.get_json()
        assert resp.get_json()["errors"] == {"tag_ids": [w["a_tag"]]}
        assert not w["second"].state.received(MARK_TAG)


def test_a_group_admin_of_the_primary_corp_marks_in_the_primary_corp_only(
    app: Any,
    client: Any,
    db_session: Any,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
    monkeypatch: Any,
) -> None:
    """The group admin's tags are the primary corp's library (what they are shown), so a customer
    who is only a friend in corp B is no friend to mark for them: 409, nothing sent to either."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch, a_tag=True) as w:
        resp = client.post(tags_url(w), headers=staff_headers(w["admin"]), json={"add_tag_ids": [w["a_tag"]]})
        assert (resp.status_code, resp.get_json()["code"]) == (409, "wecom.not_a_friend"), resp.get_json()
        assert not w["second"].state.received(MARK_TAG)
        assert not sandbox_reset.state.received(MARK_TAG)


def test_the_tag_library_listed_is_the_actors_corps(
    app: Any,
    client: Any,
    db_session: Any,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
    monkeypatch: Any,
) -> None:
    """A corp B manager sees corp B's tags; a group admin of the primary corp the primary's."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch, a_tag=True) as w:
        for_b = client.get(f"{WB}/wecom/tags", headers=staff_headers(w["manager_b"]))
        assert for_b.status_code == 200, for_b.get_json()
        assert [t["tag_id"] for t in for_b.get_json()] == [w["b_tag"]]
        for_admin = client.get(f"{WB}/wecom/tags", headers=staff_headers(w["admin"]))
        assert for_admin.status_code == 200, for_admin.get_json()
        assert [t["tag_id"] for t in for_admin.get_json()] == [w["a_tag"]]


def test_the_manual_tag_sync_reads_every_corps_library(
    app: Any,
    client: Any,
    db_session: Any,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    staff_headers: Any,
    monkeypatch: Any,
) -> None:
    """One sync job per configured corp (one corp's failure is retried alone), each reading its
    own corp's library through its own app."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch, a_tag=True) as w:
        resp = client.post(f"{WB}/wecom/tags/sync", headers=staff_headers(w["admin"]), json={})
        assert resp.status_code == 202, resp.get_json()
        db_session.expire_all()
        jobs = db_session.scalars(select(OutboxJob).where(OutboxJob.name == "wecom.sync_tags"))
        assert sorted(j.args["corp_id"] for j in jobs) == sorted([w["corp_a"], w["corp_b"]])
        run_due_jobs(app)
        assert w["second"].state.received(TAG_LIST), "corp B's library never read"
        assert sandbox_reset.state.received(TAG_LIST), "the primary corp's library never read"
