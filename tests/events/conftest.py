"""Events test harness: a store with a manager and an advisor, owners (with a tier and an
openid), and helpers that create and publish events through the workbench API and sign up
through the owner API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from backend.platform.db import utcnow
from tests.payments.conftest import deliver_to_app  # noqa: F401  (the sandbox's notifications → our app)

APP = "/api/app/v1"
WB = "/api/workbench/v1"


def ref(obj: Any) -> SimpleNamespace:
    """What the tests need of a row, read now: rows detach when a request ends its session."""
    return SimpleNamespace(id=obj.id, userid=getattr(obj, "wecom_userid", None))


@dataclass
class Owner:
    customer_id: int
    secret: str

    @property
    def id(self) -> int:
        return self.customer_id

    @property
    def headers(self) -> dict[str, str]:
        """Issued now (under frozen time too), so a test may move the clock freely."""
        from backend.platform.tokens import issue_access_token

        return {"Authorization": f"Bearer {issue_access_token(self.secret, 'owner', self.customer_id, 900)}"}


@dataclass
class Place:
    unit: Any
    manager: Any
    advisor: Any
    other_manager: Any  # manager of a store in another division
    region_manager: Any
    marketing: Any  # marketing at the group
    headers: Any  # staff -> headers

    def h(self, staff: Any = None) -> dict[str, str]:
        return self.headers(staff or self.manager)


@pytest.fixture
def place(tree: Any, make_staff: Any, staff_headers: Any) -> Place:
    return Place(
        unit=ref(tree.stores[0]),
        manager=ref(make_staff(tree.stores[0], "store_manager", userid="ev.manager")),
        advisor=ref(make_staff(tree.stores[0], "sales_advisor", userid="ev.advisor")),
        other_manager=ref(make_staff(tree.stores[3], "store_manager", userid="ev.far.manager")),
        region_manager=ref(make_staff(tree.regions[0], "region_manager", userid="ev.region")),
        marketing=ref(make_staff(tree.group, "marketing", userid="ev.marketing")),
        headers=staff_headers,
    )


@pytest.fixture
def make_owner(make_customer: Any, app: Any, db_session: Any) -> Any:
    counter = iter(range(1, 100_000))

    def build(store_unit: Any, tier: str = "standard", **kwargs: Any) -> Owner:
        n = next(counter)
        customer = make_customer(store_unit, name=kwargs.pop("name", f"车主{n}"), openid=f"o-ev-{n:05d}", **kwargs)
        customer.tier = tier
        db_session.commit()
        return Owner(customer.id, app.config["SECRET_KEY"])

    return build


def event_body(now: datetime | None = None, **overrides: Any) -> dict[str, Any]:
    now = now or utcnow()
    starts = now + timedelta(days=3)
    body: dict[str, Any] = {
        "title": "冬季免费检测日",
        "place": "门店售后大厅",
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=3)).isoformat(),
        "signup_opens_at": (now - timedelta(hours=1)).isoformat(),
        "signup_closes_at": (starts - timedelta(hours=2)).isoformat(),
        "cancel_cutoff_at": (starts - timedelta(days=1)).isoformat(),
        "capacity": 20,
        "max_party_size": 2,
    }
    body.update({k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in overrides.items()})
    return {k: v for k, v in body.items() if v is not None}


def create_event(client: Any, headers: dict[str, str], publish: bool = True, **overrides: Any) -> dict[str, Any]:
    resp = client.post(f"{WB}/events", json=event_body(**overrides), headers=headers)
    assert resp.status_code == 201, resp.get_json()
    event = resp.get_json()
    if publish:
        resp = client.post(f"{WB}/events/{event['id']}/publish", json={}, headers=headers)
        assert resp.status_code == 200, resp.get_json()
        event = resp.get_json()
    return event


def sign_up(client: Any, owner: Owner, event_id: int, party_size: int = 1, key: str | None = None) -> Any:
    headers = dict(owner.headers)
    if key:
        headers["Idempotency-Key"] = key
    return client.post(f"{APP}/events/{event_id}/registrations", json={"party_size": party_size}, headers=headers)


def cancel(client: Any, owner: Owner, registration_id: int) -> Any:
    return client.post(f"{APP}/me/event-registrations/{registration_id}/cancel", json={}, headers=owner.headers)


def event_row(db_session: Any, event_id: int) -> Any:
    from backend.events.models import Event

    db_session.expire_all()
    return db_session.get(Event, event_id)
