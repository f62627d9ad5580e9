"""Ids inside JSON bodies go through the actor's scope like ids in paths: a store-0 manager
cannot point an event or a coupon template at another unit's segment, nor file a coupon push
under another unit's campaign (each would read or write that unit's data)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from backend.platform.db import utcnow
from tests.campaigns.helpers import foreign_campaign_ids
from tests.events.conftest import event_body

WB = "/api/workbench/v1"


@pytest.fixture
def setup(tree: Any, make_staff: Any, staff_headers: Any, db_session: Any) -> dict[str, Any]:
    from backend.segments.models import Segment

    manager = make_staff(tree.stores[0], "store_manager")
    mine = Segment(name="本店分群", owner_unit_id=tree.stores[0].id, filters={})
    db_session.add(mine)
    db_session.flush()
    foreign = foreign_campaign_ids(db_session, tree.stores[3])
    db_session.commit()
    return {"h": staff_headers(manager), "foreign": foreign, "my_segment": mine.id, "store": tree.stores[0].id}


def _template_body(store_id: int, **extra: Any) -> dict[str, Any]:
    now = utcnow()
    return {
        "name": "保养立减",
        "kind": "fixed",
        "value_fen": 1000,
        "store_id": store_id,
        "stock": 10,
        "per_member_limit": 1,
        "claim_starts_at": (now - timedelta(days=1)).isoformat(),
        "claim_ends_at": (now + timedelta(days=30)).isoformat(),
        "use_days": 30,
        **extra,
    }


def test_event_cannot_target_another_units_segment(client: Any, setup: Any) -> None:
    h, foreign = setup["h"], setup["foreign"]["segment_id"]
    resp = client.post(f"{WB}/events", json=event_body(segment_id=foreign), headers=h)
    assert resp.status_code == 422, resp.get_json()
    assert "segment_id" in resp.get_json()["errors"]["json"]
    ok = client.post(f"{WB}/events", json=event_body(segment_id=setup["my_segment"]), headers=h)
    assert ok.status_code == 201, ok.get_json()
    patched = client.patch(f"{WB}/events/{ok.get_json()['id']}", json={"segment_id": foreign}, headers=h)
    assert patched.status_code == 422 and "segment_id" in patched.get_json()["errors"]["json"]


def test_coupon_template_cannot_target_another_units_segment(client: Any, setup: Any, db_session: Any) -> None:
    from backend.offers.models import CouponTemplate

    h, foreign = setup["h"], setup["foreign"]["segment_id"]
    resp = client.post(f"{WB}/coupon-templates", json=_template_body(setup["store"], segment_id=foreign), headers=h)
    assert resp.status_code == 422, resp.get_json()
    assert "segment_id" in resp.get_json()["errors"]["json"]
    assert db_session.scalars(select(CouponTemplate)).all() == []
    ok = client.post(
        f"{WB}/coupon-templates", json=_template_body(setup["store"], segment_id=setup["my_segment"]), headers=h
    )
    assert ok.status_code == 201, ok.get_json()
    patched = client.patch(f"{WB}/coupon-templates/{ok.get_json()['id']}", json={"segment_id": foreign}, headers=h)
    assert patched.status_code == 422 and "segment_id" in patched.get_json()["errors"]["json"]


def test_coupon_push_cannot_be_filed_under_another_units_campaign(client: Any, setup: Any) -> None:
    h = setup["h"]
    template = client.post(f"{WB}/coupon-templates", json=_template_body(setup["store"]), headers=h).get_json()
    body = {"segment_id": setup["my_segment"], "campaign_id": setup["foreign"]["campaign_id"]}
    resp = client.post(f"{WB}/coupon-templates/{template['id']}/pushes", json=body, headers=h)
    assert resp.status_code == 404 and resp.get_json()["code"] == "campaigns.not_found"


def test_campaign_links_only_coupon_templates_and_events_of_the_scope(
    client: Any, setup: Any, tree: Any, make_customer: Any, make_staff: Any, db_session: Any
) -> None:
    """A campaign's results count the used coupons of its linked templates: linking another
    division's template would read that division's figures."""
    from tests.events.helpers import foreign_event_ids
    from tests.offers.helpers import foreign_offer_ids

    h, now = setup["h"], utcnow()
    customer = make_customer(tree.stores[3])
    template_id = foreign_offer_ids(
        db_session, tree.stores[3], customer, make_staff(tree.stores[3], "service_advisor")
    )["coupon_template_id"]
    event_id = foreign_event_ids(db_session, tree.stores[3], customer)["event_id"]
    db_session.commit()
    base = {"name": "活动", "starts_at": (now - timedelta(hours=1)).isoformat()}
    base["ends_at"] = (now + timedelta(days=30)).isoformat()
    for links in ({"coupon_template": [template_id]}, {"event": [event_id]}):
        resp = client.post(f"{WB}/campaigns", json={**base, "links": links}, headers=h)
        assert resp.status_code == 422, resp.get_json()
        assert "links" in resp.get_json()["errors"]["json"]
    mine = client.post(f"{WB}/campaigns", json=base, headers=h).get_json()
    patched = client.patch(f"{WB}/campaigns/{mine['id']}", json={"links": {"event": [event_id]}}, headers=h)
    assert patched.status_code == 422 and "links" in patched.get_json()["errors"]["json"]
