"""A group-wide event's sign-up list: everyone below the group sees the event, but the list of
who signed up is customer data, so each caller sees the sign-ups of the customers in their own
scope — all of them for the staff who run the event (its managers and the venue store)."""

from __future__ import annotations

from typing import Any

from backend.org.models import Staff
from tests.events.conftest import WB, create_event, sign_up


def test_a_group_events_sign_ups_are_shown_by_customer_scope(
    client: Any, tree: Any, place: Any, make_owner: Any, db_session: Any
) -> None:
    advisor = db_session.get(Staff, place.advisor.id)
    mine = make_owner(tree.stores[0], advisor=advisor)
    colleague_s = make_owner(tree.stores[0])
    far = make_owner(tree.stores[3])
    event = create_event(
        client, place.h(place.marketing), org_unit_id=tree.group.id, store_id=tree.stores[3].id, capacity=10
    )
    for owner in (mine, colleague_s, far):
        assert sign_up(client, owner, event["id"]).status_code == 201

    def seen(staff: Any) -> set[int]:
        resp = client.get(f"{WB}/events/{event['id']}/registrations", headers=place.h(staff))
        assert resp.status_code == 200, resp.get_json()
        return {r["customer_id"] for r in resp.get_json()["items"]}

    everyone = {mine.id, colleague_s.id, far.id}
    assert seen(place.marketing) == everyone  # organiser's side
    assert seen(place.other_manager) == everyone  # the venue store checks people in
    assert seen(place.manager) == {mine.id, colleague_s.id}
    assert seen(place.region_manager) == {mine.id, colleague_s.id}
    assert seen(place.advisor) == {mine.id}
