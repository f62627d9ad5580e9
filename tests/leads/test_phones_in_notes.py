"""Phone numbers typed into a lead's note (by the owner) and into a follow-up note (by the
advisor): stored masked, the owner's note as typed sealed alongside and revealed only through
the audited read, in scope."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from backend.leads.models import Lead
from tests.leads.conftest import APP, WB, submit
from tests.pii_helpers import clear_copies, reveals

TYPED = "换号了，打0086 13912345678找我"
SHOWN = "换号了，打139****5678找我"


def _row(db_session: Any, lead_id: int) -> Lead:
    db_session.expire_all()
    return db_session.scalars(select(Lead).where(Lead.id == lead_id)).one()


def test_numbers_in_lead_notes_are_sealed_masked_and_revealed_with_audit(
    client: Any, db_session: Any, store: Any, owner: Any, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    resp = submit(client, owner, {"type": "new_car", "series": "ID.4", "note": TYPED}, key="lead-phone-1")
    assert resp.status_code == 201, resp.get_json()
    lead = resp.get_json()
    assert lead["note"] == SHOWN
    advisor = next(s for s in store.sales if s.id == lead["advisor_id"])
    followed = client.post(
        f"{WB}/leads/{lead['id']}/status",
        json={"status": "contacted", "note": "客户说另一个号 137-1111-2222 也能打", "version": 1},
        headers=store.headers(advisor),
    )
    assert followed.status_code == 200, followed.get_json()

    assert clear_copies(db_session, caplog, "13912345678", "13711112222") == {}
    row = _row(db_session, lead["id"])
    assert row.note == SHOWN and row.note_sealed is not None
    assert client.get(f"{APP}/me/leads/{lead['id']}", headers=owner.headers).get_json()["note"] == SHOWN
    detail = client.get(f"{WB}/leads/{lead['id']}", headers=store.headers(advisor)).get_json()
    assert detail["note"] == SHOWN
    assert "客户说另一个号 137****2222 也能打" in str(detail["history"])

    revealed = client.get(f"{WB}/leads/{lead['id']}/note", headers=store.headers(store.manager))
    assert revealed.status_code == 200, revealed.get_json()
    assert revealed.get_json() == {"text": TYPED}
    assert reveals(db_session, "lead.note") == [(str(store.manager.id), "lead.note", str(lead["id"]))]


def test_a_lead_note_reveal_outside_the_scope_is_404(client: Any, db_session: Any, store: Any, owner: Any) -> None:
    lead = submit(client, owner, {"type": "new_car", "series": "ID.4", "note": TYPED}).get_json()
    resp = client.get(f"{WB}/leads/{lead['id']}/note", headers=store.headers(store.other_store_manager))
    assert resp.status_code == 404 and resp.get_json()["code"] == "lead.not_found"
    assert reveals(db_session, "lead.note") == []


def test_a_lead_note_without_a_number_is_stored_as_typed(client: Any, db_session: Any, owner: Any) -> None:
    lead = submit(client, owner, {"type": "new_car", "series": "ID.4", "note": "周末看车，预算20万"}).get_json()
    row = _row(db_session, lead["id"])
    assert (row.note, row.note_sealed) == ("周末看车，预算20万", None)


def test_a_manager_without_the_phone_right_is_refused_and_nothing_is_audited(
    client: Any, db_session: Any, tree: Any, make_ref_staff: Any, store: Any, owner: Any
) -> None:
    """A region manager sees the lead (it is in the region) but works on masked data, like for
    the customer's phone: 403, no audit row."""
    lead = submit(client, owner, {"type": "new_car", "series": "ID.4", "note": TYPED}).get_json()
    region_manager = make_ref_staff(tree.regions[0], "region_manager")
    headers = store.headers(region_manager)
    assert client.get(f"{WB}/leads/{lead['id']}", headers=headers).get_json()["note"] == SHOWN
    resp = client.get(f"{WB}/leads/{lead['id']}/note", headers=headers)
    assert resp.status_code == 403 and resp.get_json()["code"] == "customer.phone_forbidden"
    assert reveals(db_session, "lead.note") == []
