"""A WeCom relation's remark and description (typed by the advisor in WeCom, synced here) are
sealed whole at rest (revision 0020) and shown in the customer 360 with their numbers masked:
here the shapes owners and advisors type that the mask missed, a 0086 prefix written without a
separator and a landline with its area code."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.pii_helpers import clear_copies
from tests.wecom.helpers import ZHANG, callback_world, contact_xml, friend_of, now, ok, post_event

EXT = "wmPhoneNotes001"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    return callback_world(sandbox_reset, tree, make_staff)


def test_numbers_in_a_relations_notes_are_masked_in_the_360(
    client: Any, db_session: Any, world: Any, staff_headers: Any, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    sb = world["sandbox"]
    sb.state.add_external_contact(EXT, "赵先生", follow_userid=ZHANG, remark="赵总008613912345678")
    with sb.state.lock:
        sb.state.follows[(ZHANG, EXT)]["description"] = "店里座机(021)62345678找他"
    headers = staff_headers(world["advisor"])
    db_session.commit()
    ok(post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, EXT, now())))
    friend = friend_of(db_session, ZHANG, EXT)
    db_session.commit()
    shown = client.get(f"/api/workbench/v1/customers/{friend.customer_id}", headers=headers).get_json()
    relation = next(r for r in shown["wecom_relations"] if r["userid"] == ZHANG)
    assert (relation["remark"], relation["description"]) == ("赵总139****5678", "店里座机021-****5678找他")
    assert clear_copies(db_session, caplog, "13912345678", "62345678") == {}
