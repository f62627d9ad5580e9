"""Profiles and kind counts after a shuffled burst with duplicates equal those in order,
and equal a rebuild from the touchpoints."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import CustomerIdentity, IdentityKind
from backend.touchpoints.service import profile_of, rebuild_profiles
from backend.wecom.models import WeComAlert, WeComFriend
from tests.wecom.helpers import callback_world, contact_xml, post_event

A, B = "advisor.zhang", "advisor.qian"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    w = callback_world(sandbox_reset, tree, make_staff)
    make_staff(tree.stores[1], "service_advisor", userid=B, name="钱顾问")
    return w


def _events(sb: Any, base: int) -> list[str]:
    suv = next(t["id"] for g in sb.state.tag_groups.values() for t in g["tag"] if t["name"] == "SUV")
    events = []
    for c in range(12):
        ext = f"wmPB{c:03d}"
        sb.state.add_external_contact(ext, f"客户{c}", unionid=f"oPB{c}")
        for a, userid in enumerate((A, B)):
            sb.state.add_follow(userid, ext, tags=[suv] if c % 2 else [])
            t = base + c * 20 + a * 7
            events.append(contact_xml(sb, "add_external_contact", userid, ext, t))
            if c % 4 == 1:
                events.append(contact_xml(sb, "edit_external_contact", userid, ext, t + 1))
            if c % 3 == 0:
                events.append(contact_xml(sb, "del_follow_user", userid, ext, t + 2))
                events.append(contact_xml(sb, "del_external_contact", userid, ext, t + 4))
            if c % 6 == 0:
                events.append(contact_xml(sb, "add_external_contact", userid, ext, t + 5))
    return events


def _snapshot(session: Any) -> dict[str, Any]:
    session.expire_all()
    out = {}
    ids = session.execute(
        select(CustomerIdentity.value, CustomerIdentity.customer_id).where(
            CustomerIdentity.kind == IdentityKind.EXTERNAL_USERID
        )
    ).all()
    staff = {
        s.id: s.wecom_userid
        for s in session.scalars(select(__import__("backend.org.models", fromlist=["Staff"]).Staff))
    }
    for ext, cid in ids:
        p = profile_of(session, cid)
        p["last_contact_advisor_id"] = staff.get(p["last_contact_advisor_id"])
        out[ext] = p
    alerts = sorted(
        (a.kind.value, int(a.occurred_at.timestamp()), a.resolved_at is None)
        for a in session.scalars(select(WeComAlert))
    )
    return {"profiles": out, "alerts": alerts}


def test_profiles_after_shuffled_burst_equal_in_order_and_rebuild(
    client: Any, db_session: Any, world: Any, app: Any
) -> None:
    sb = world["sandbox"]
    events = _events(sb, int(time.time()) - 600)
    for xml in events:
        assert post_event(client, sb, xml).status_code == 200
    expected = _snapshot(db_session)
    with app.app_context():
        rebuild_profiles(db_session)
    assert _snapshot(db_session) == expected, "incremental projection != rebuild (in order)"

    for table in (
        "wecom_alert",
        "wecom_channel_fact",
        "wecom_friend_tag",
        "wecom_friend",
        "wecom_app_message_recipient",
        "wecom_app_message",
        "touchpoint",
        "customer_kind_count",
        "customer_profile",
        "customer_advisor",
        "customer_identity",
        "wecom_raw_event",
        "outbox_job",
        "audit_log",
        "customer_merge",
    ):
        if table in WeComFriend.metadata.tables:
            db_session.execute(WeComFriend.metadata.tables[table].delete())
    db_session.execute(WeComFriend.metadata.tables["customer"].delete())
    db_session.commit()

    rng = random.Random(11)
    burst = events + rng.sample(events, 30) + rng.sample(events, 15)
    rng.shuffle(burst)
    for xml in burst:
        assert post_event(client, sb, xml).status_code == 200
    got = _snapshot(db_session)
    assert got["alerts"] == expected["alerts"]
    diff = {k: (got["profiles"].get(k), v) for k, v in expected["profiles"].items() if got["profiles"].get(k) != v}
    assert diff == {}
