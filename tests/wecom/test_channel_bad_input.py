"""Channel QR codes: out-of-range ids, repeated advisors, blank values, odd bodies and impossible
dates are answered as client errors (4xx) or accepted, on every channel endpoint; never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from tests.wecom.helpers import CHANNELS, ZHANG, create_channel, post_channel

HUGE = 2**64  # past every integer column


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    manager = make_staff(tree.stores[0], "store_manager", userid="mgr0")
    admin = make_staff(tree.group, "group_admin", userid="gadmin")
    return {"sb": sandbox_reset, "tree": tree, "h": staff_headers(manager), "admin": staff_headers(admin)}


@pytest.mark.parametrize(
    "who,overrides",
    [
        ("admin", {"store_id": HUGE}),
        ("h", {"welcome_template_id": HUGE}),
        ("admin", {"welcome_template_id": HUGE, "store_id": None}),
        ("h", {"auto_tag_ids": [""]}),
        ("h", {"userids": [ZHANG, ZHANG], "daily_cap": 3}),
        ("h", {"name": "x" * 64, "state": "a" * 30}),  # both at their maximum length
    ],
)
def test_create_with_odd_input_never_answers_500(client: Any, world: Any, who: str, overrides: dict) -> None:
    """Ids beyond the database's integers are looked up as missing, blank tag ids and repeated
    advisors are validated, and values at their maximum length fit their columns."""
    resp = post_channel(client, world[who], world["tree"].stores[0].id, [ZHANG], **overrides)
    assert resp.status_code < 500, resp.get_json()


def test_reads_and_patches_with_odd_input_never_answer_500(client: Any, world: Any) -> None:
    """The same holds for a channel's detail, statistics and updates: a missing id is a 404, a
    body that is not an object or a date that does not exist is a 422, and clearing the cap or
    repeating an advisor in a patch is handled."""
    cid = create_channel(client, world["h"], world["tree"].stores[0].id, [ZHANG])["id"]
    results = {
        "get huge": client.get(f"{CHANNELS}/{HUGE}", headers=world["h"]),
        "stats huge": client.get(f"{CHANNELS}/{HUGE}/stats", headers=world["h"]),
        "patch huge tpl": client.patch(f"{CHANNELS}/{cid}", headers=world["h"], json={"welcome_template_id": HUGE}),
        "patch cap none": client.patch(f"{CHANNELS}/{cid}", headers=world["h"], json={"daily_cap": None}),
        "patch userids dup": client.patch(f"{CHANNELS}/{cid}", headers=world["h"], json={"userids": [ZHANG, ZHANG]}),
        "patch list body": client.patch(f"{CHANNELS}/{cid}", headers=world["h"], json=[1, 2]),
        "stats bad date": client.get(
            f"{CHANNELS}/{cid}/stats", headers=world["h"], query_string={"date_from": "2024-02-30"}
        ),
        "stats only to": client.get(
            f"{CHANNELS}/{cid}/stats", headers=world["h"], query_string={"date_to": "2000-01-01"}
        ),
    }
    assert {k: r.status_code for k, r in results.items() if r.status_code >= 500} == {}
