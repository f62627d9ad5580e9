"""A merge hands the survivor the merged-away customer's active sign-ups: the same person cannot
take a second seat at an event they are already signed up for, and the reversal hands it back."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.events.models import EventRegistration
from tests.events.conftest import Owner, create_event, sign_up


def test_survivor_sees_the_merged_sign_up_and_cannot_take_a_second_seat(
    client: Any, db_session: Any, place: Any, make_owner: Any
) -> None:
    survivor, merged = make_owner(place.unit), make_owner(place.unit)
    event = create_event(client, place.h())
    first = sign_up(client, merged, event["id"])
    assert first.status_code == 201, first.get_json()
    resp = client.post(
        "/api/workbench/v1/customer-merges",
        json={"source_id": merged.id, "target_id": survivor.id, "reason": "同一人"},
        headers=place.h(),
    )
    assert resp.status_code == 201, resp.get_json()
    again = sign_up(client, survivor, event["id"])
    assert again.status_code == 409 and again.get_json()["code"] == "event.already_signed_up", again.get_json()
    # The token of the merged-away row acts as the survivor too.
    assert sign_up(client, Owner(merged.id, merged.secret), event["id"]).status_code == 409
    db_session.expire_all()
    regs = db_session.scalars(select(EventRegistration)).all()
    assert [(r.customer_id, r.active_customer_id) for r in regs] == [(survivor.id, survivor.id)]

    undo = client.post(f"/api/workbench/v1/customer-merges/{resp.get_json()['id']}/reverse", headers=place.h())
    assert undo.status_code == 200, undo.get_json()
    db_session.expire_all()
    reg = db_session.scalars(select(EventRegistration)).one()
    assert (reg.customer_id, reg.active_customer_id) == (merged.id, merged.id)
