"""Fixtures of the campaigns tests: marketing staff at the group, rule and campaign builders."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from backend.platform.db import utcnow

WB = "/api/workbench/v1"
APP = "/api/app/v1"


def vin(n: int) -> str:
    """A European VIN (no check digit at position 9), unique per n."""
    return f"WVWZZZ1KZ{n:08d}"


def iso(t: datetime) -> str:
    return t.isoformat()


@pytest.fixture
def marketing(tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, str]:
    return staff_headers(make_staff(tree.group, "marketing"))


def make_rule(client: Any, headers: dict, **body: Any) -> dict[str, Any]:
    now = utcnow()
    payload = {"name": "规则", "kind": "action", "trigger": "car_bound", "points": 10}
    payload |= {"valid_from": iso(now - timedelta(days=1))}
    payload |= body
    resp = client.post(f"{WB}/earning-rules", json=payload, headers=headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def make_campaign(client: Any, headers: dict, schedule: bool = True, **body: Any) -> dict[str, Any]:
    now = utcnow()
    payload = {"name": "活动", "goal": "绑车拉新", "starts_at": iso(now - timedelta(hours=1))}
    payload |= {"ends_at": iso(now + timedelta(days=30))} | body
    resp = client.post(f"{WB}/campaigns", json=payload, headers=headers)
    assert resp.status_code == 201, resp.get_json()
    campaign = resp.get_json()
    if schedule:
        resp = client.post(f"{WB}/campaigns/{campaign['id']}/schedule", headers=headers)
        assert resp.status_code == 200, resp.get_json()
        campaign = resp.get_json()
    return campaign


def linkable(session: Any, store: Any, events: int = 1) -> dict[str, list[int]]:
    """Campaign links in marketing's scope: events of `store` and one of its coupon templates
    (a campaign links only what its author may see)."""
    from backend.events.models import Event
    from backend.offers.models import CouponKind, CouponTemplate

    now = utcnow()
    rows: list[Any] = [
        Event(
            org_unit_id=store.id, store_id=store.id, title=f"活动{n}", place="门店", starts_at=now + timedelta(days=2),
            ends_at=now + timedelta(days=2, hours=2), signup_opens_at=now, signup_closes_at=now + timedelta(days=1),
            cancel_cutoff_at=now + timedelta(days=1), checkin_opens_at=now + timedelta(days=2),
            checkin_closes_at=now + timedelta(days=2, hours=2), capacity=5,
        )
        for n in range(events)
    ]  # fmt: skip
    template = CouponTemplate(
        name="活动券", kind=CouponKind.FIXED, value_fen=100, store_id=store.id, stock=1, claim_starts_at=now,
        claim_ends_at=now + timedelta(days=1), use_days=1,
    )  # fmt: skip
    session.add_all([*rows, template])
    session.commit()
    return {"coupon_template": [template.id], "event": [e.id for e in rows]}
