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
