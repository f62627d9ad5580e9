"""A segment's tag filters are tag ids of the actor's own WeCom corp (a dealer group may run a
second corp's app: tag ids are each corp's own, and two corps can hold the same id).

A marketer of corp A could name corp B's tag in `tags_any`/`tags_all`/`tags_none`: the preview
counted the customers corp B's advisors had tagged (a tag library corp A cannot list), a 200
with a count told that the id existed there, and a saved segment selected and pushed by it.
Such an id is now refused like an unknown one; and a tag id both corps hold selects the
relations of the segment's corp only."""

from __future__ import annotations

from typing import Any

import pytest

from backend.segments.service import segment_customer_ids
from backend.wecom.models import WeComFriendTag, WeComTag
from tests.wecom.helpers import corp_b_world, corp_staff

WB = "/api/workbench/v1"


@pytest.fixture
def corp_b(
    app: Any,
    client: Any,
    db_session: Any,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    monkeypatch: Any,
) -> Any:
    """Corp A (primary, tag SUV in its library) and corp B, whose relation `friend_b` carries
    corp B's tag `b_tag`."""
    with corp_b_world(app, client, db_session, sandbox_reset, tree, make_staff, monkeypatch, a_tag=True) as w:
        db_session.add(WeComFriendTag(friend_id=w["friend_b"].id, tag_id=w["b_tag"]))
        db_session.commit()
        yield w


def _preview(client: Any, headers: dict, filters: dict) -> Any:
    return client.post(f"{WB}/segments/preview", json={"filters": filters}, headers=headers)


@pytest.mark.parametrize("field", ["tags_any", "tags_all", "tags_none"])
def test_a_tag_id_of_another_corp_is_refused_like_an_unknown_one(
    client: Any, corp_b: Any, tree: Any, make_staff: Any, staff_headers: Any, field: str
) -> None:
    marketer_a = staff_headers(make_staff(tree.group, "marketing"))

    refused = _preview(client, marketer_a, {field: [corp_b["b_tag"]]})
    assert refused.status_code == 422, refused.get_json()  # before: 200, tags_any counting corp B's customer
    body = refused.get_json()
    assert body["code"] == "segments.tag_unknown"
    assert body["errors"] == {"json": {"filters": {field: ["tag ids of your WeCom corp's tag library"]}}}
    # the same answer as for an id no corp has: it does not tell that the tag exists elsewhere
    unknown = _preview(client, marketer_a, {field: ["etNoCorpHasThisTag"]})
    assert (unknown.status_code, unknown.get_json()) == (422, body)

    created = client.post(
        f"{WB}/segments", json={"name": "B级", "filters": {field: [corp_b["b_tag"]]}}, headers=marketer_a
    )
    assert (created.status_code, created.get_json()["code"]) == (422, "segments.tag_unknown")

    own = client.post(f"{WB}/segments", json={"name": "SUV", "filters": {field: [corp_b["a_tag"]]}}, headers=marketer_a)
    assert own.status_code == 201, own.get_json()
    patched = client.patch(
        f"{WB}/segments/{own.get_json()['id']}", json={"filters": {field: [corp_b["b_tag"]]}}, headers=marketer_a
    )
    assert (patched.status_code, patched.get_json()["code"]) == (422, "segments.tag_unknown")


def test_corp_b_staff_filter_by_corp_b_tags_and_not_by_corp_a_ones(
    client: Any, corp_b: Any, tree: Any, db_session: Any, staff_headers: Any
) -> None:
    marketer_b = staff_headers(corp_staff(db_session, corp_b["corp_b"], tree.group, "mkt.b", "marketing", "B营销"))
    ok = _preview(client, marketer_b, {"tags_any": [corp_b["b_tag"]]})
    assert (ok.status_code, ok.get_json()) == (200, {"count": 1})
    refused = _preview(client, marketer_b, {"tags_any": [corp_b["a_tag"]]})
    assert (refused.status_code, refused.get_json()["code"]) == (422, "segments.tag_unknown")


def test_a_tag_id_both_corps_hold_selects_the_segments_corps_relations_only(
    client: Any, corp_b: Any, tree: Any, make_staff: Any, db_session: Any, staff_headers: Any
) -> None:
    """Corp A's library holds a tag with the id of corp B's tag, which only corp B's relation
    carries: corp A's segment by that id selects nobody (before: corp B's customer)."""
    db_session.add(
        WeComTag(corp_id=corp_b["corp_a"], tag_id=corp_b["b_tag"], group_id="gX", group_name="X", name="同号")
    )
    db_session.commit()
    marketer_a = staff_headers(make_staff(tree.group, "marketing"))
    assert _preview(client, marketer_a, {"tags_any": [corp_b["b_tag"]]}).get_json() == {"count": 0}
    created = client.post(
        f"{WB}/segments", json={"name": "同号", "filters": {"tags_any": [corp_b["b_tag"]]}}, headers=marketer_a
    )
    assert created.status_code == 201, created.get_json()
    segment_id = created.get_json()["id"]
    assert client.get(f"{WB}/segments/{segment_id}/count", headers=marketer_a).get_json() == {"count": 0}
    assert list(db_session.scalars(segment_customer_ids(db_session, segment_id))) == []

    marketer_b = staff_headers(corp_staff(db_session, corp_b["corp_b"], tree.group, "mkt.b", "marketing", "B营销"))
    by_b = client.post(
        f"{WB}/segments", json={"name": "B级", "filters": {"tags_any": [corp_b["b_tag"]]}}, headers=marketer_b
    ).get_json()
    assert list(db_session.scalars(segment_customer_ids(db_session, by_b["id"]))) == [corp_b["friend_b"].customer_id]
