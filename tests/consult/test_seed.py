"""Demo consultations from `seed_demo`: open ones unclaimed, overdue and answered, one closed,
visible in the demo staff's inboxes and the demo owner's app; a second run adds nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from backend.consult.models import Conversation, Message, Response
from backend.org.models import Staff
from backend.seed import DEMO_MANAGER, seed_demo
from tests.consult.conftest import WB


def _count(db_session: Any, model: Any) -> int:
    return db_session.scalar(select(func.count()).select_from(model))


@pytest.mark.usefixtures("app_ctx")
def test_the_demo_has_conversations_in_every_box(app: Any, client: Any, db_session: Any, staff_headers: Any) -> None:
    summary = seed_demo(customers=20)
    assert "consultations: 6 at the demo store" in summary
    manager = db_session.scalars(select(Staff).where(Staff.wecom_userid == DEMO_MANAGER)).one()
    headers = staff_headers(manager)
    boxes = {
        box: client.get(f"{WB}/inbox?box={box}", headers=headers).get_json()["items"]
        for box in ("unclaimed", "overdue", "closed")
    }
    assert len(boxes["unclaimed"]) == 2 and len(boxes["closed"]) == 1
    assert len(boxes["overdue"]) >= 2 and all(c["overdue"] for c in boxes["overdue"])
    assert {c["topic"] for c in boxes["unclaimed"]} == {"other", "insurance"}
    answered = db_session.scalars(select(Response)).all()
    assert len(answered) == 3 and {r.kind for r in answered} == {"first_response"}
    first = db_session.scalars(select(Conversation).where(Conversation.first_response_at.is_not(None))).all()
    assert all(c.first_response_business_seconds is not None for c in first)
    before = (_count(db_session, Conversation), _count(db_session, Message), _count(db_session, Response))
    assert "consultations: already there" in seed_demo(customers=20)
    assert (_count(db_session, Conversation), _count(db_session, Message), _count(db_session, Response)) == before
