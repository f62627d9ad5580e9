"""the WeCom workbench API keeps every actor inside their scope. Another store's (or
region's) channels, templates, materials, handovers, lost customers, behaviour figures and group
chats are neither listed nor read nor changed (404, or the role's 403), ids of them in a body
are refused."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from backend.platform.db import utcnow
from tests.wecom.helpers import ZHANG
from tests.wecom.test_api_hostile_input import error_shape_problem

WB = "/api/workbench/v1/wecom"


def _today() -> date:
    from backend.wecom.behaviour import china_today

    return china_today()


def store_objects(db_session: Any, corp: str, store: Any, advisor: Any, tag: str) -> dict[str, int]:
    """A channel, template, material, handover, lost-customer alert, behaviour day and group chat
    of `store` (its advisor `advisor`, in `corp`), committed: their ids."""
    from backend.customers.models import Customer, CustomerAdvisor
    from backend.wecom.models import (
        AlertKind,
        FriendStatus,
        WeComAlert,
        WeComChannel,
        WeComFriend,
        WeComGroupChat,
        WeComMaterial,
        WeComRawEvent,
        WelcomeTemplate,
    )
    from backend.wecom.ops_models import WeComBehaviourDay, WeComHandover

    customer = Customer(name=f"客户{tag}", home_store_id=store.id)
    db_session.add(customer)
    db_session.flush()
    db_session.add(CustomerAdvisor(customer_id=customer.id, staff_id=advisor.id, role="sales_advisor"))
    friend = WeComFriend(
        corp_id=corp,
        userid=advisor.wecom_userid,
        external_userid=f"wm{tag}",
        staff_id=advisor.id,
        customer_id=customer.id,
        status=FriendStatus.DELETED_BY_CUSTOMER
        if hasattr(FriendStatus, "DELETED_BY_CUSTOMER")
        else list(FriendStatus)[-1],
    )
    raw = WeComRawEvent(corp_id=corp, dedup_hash=(tag * 64)[:64], dedup_key=tag, event="e", xml="<xml/>", status="dead")
    template = WelcomeTemplate(name=f"t{tag}", store_id=store.id, text="hi")
    material = WeComMaterial(
        name="m.png", store_id=store.id, kind="image", content_type="image/png", size=5, sha256="0" * 64, content=b"x"
    )
    channel = WeComChannel(
        corp_id=corp, name=f"c{tag}", kind="store", state=f"st-{tag}", store_id=store.id, userids=[advisor.wecom_userid]
    )
    chat = WeComGroupChat(
        corp_id=corp, chat_id=f"wr{tag}", name=f"群{tag}", owner_userid=advisor.wecom_userid, owner_staff_id=advisor.id
    )
    db_session.add_all([friend, raw, template, material, channel, chat])
    db_session.flush()
    alert = WeComAlert(
        raw_event_id=raw.id,
        kind=AlertKind.DELETED_BY_CUSTOMER,
        friend_id=friend.id,
        customer_id=customer.id,
        staff_id=advisor.id,
        store_id=store.id,
        occurred_at=utcnow(),
    )
    handover = WeComHandover(
        corp_id=corp,
        kind="on_duty",
        handover_userid=advisor.wecom_userid,
        takeover_userid=advisor.wecom_userid,
        handover_staff_id=advisor.id,
        takeover_staff_id=advisor.id,
        store_id=store.id,
        status="finished",
    )
    day = WeComBehaviourDay(
        corp_id=corp,
        userid=advisor.wecom_userid,
        staff_id=advisor.id,
        store_id=store.id,
        stat_date=_today() - timedelta(days=1),
        chat_cnt=7,
    )
    db_session.add_all([alert, handover, day])
    db_session.commit()
    return {
        "customer_id": customer.id,
        "channel_id": channel.id,
        "template_id": template.id,
        "material_id": material.id,
        "handover_id": handover.id,
        "alert_id": alert.id,
        "chat_id": chat.id,
        "advisor_id": advisor.id,
    }


def visible(client: Any, headers: dict[str, str], ids: dict[str, int]) -> dict[str, Any]:
    """Which of the objects `ids` the actor reaches through each read endpoint: an entry per
    endpoint that shows one (status and what it showed)."""
    yesterday = (_today() - timedelta(days=1)).isoformat()
    seen: dict[str, Any] = {}

    def listed(name: str, url: str, key: str, wanted: int, **query: Any) -> None:
        resp = client.get(url, headers=headers, query_string=query)
        if resp.status_code == 200:
            body = resp.get_json()
            items = body["items"] if isinstance(body, dict) else body
            if any(item.get(key) == wanted for item in items):
                seen[name] = "listed"
        elif resp.status_code >= 500 or error_shape_problem(resp):
            seen[name] = (resp.status_code, resp.get_json())

    def read(name: str, url: str, **query: Any) -> None:
        resp = client.get(url, headers=headers, query_string=query)
        if resp.status_code not in (403, 404) or error_shape_problem(resp):
            seen[name] = (resp.status_code, str(resp.get_json())[:200])

    listed("channels", f"{WB}/channels", "id", ids["channel_id"])
    listed("templates", f"{WB}/welcome-templates", "id", ids["template_id"])
    listed("materials", f"{WB}/materials", "id", ids["material_id"])
    listed("handovers", f"{WB}/handovers", "id", ids["handover_id"])
    listed("lost-customers", f"{WB}/lost-customers", "alert_id", ids["alert_id"])
    listed("group-chats", f"{WB}/group-chats", "id", ids["chat_id"])
    listed("behaviour", f"{WB}/behaviour", "staff_id", ids["advisor_id"], start_date=yesterday, end_date=yesterday)
    read("channel", f"{WB}/channels/{ids['channel_id']}")
    read("channel stats", f"{WB}/channels/{ids['channel_id']}/stats")
    read("material", f"{WB}/materials/{ids['material_id']}")
    read("handover", f"{WB}/handovers/{ids['handover_id']}")
    read(
        "behaviour by staff",
        f"{WB}/behaviour",
        start_date=yesterday,
        end_date=yesterday,
        staff_id=ids["advisor_id"],
    )
    return seen


def changes(
    client: Any, headers: dict[str, str], ids: dict[str, int], own_store_id: int, own_userid: str
) -> dict[str, Any]:
    """Every write naming one of `ids` (in the path or the body): those not refused with 403/404
    (a 422 that first checked the foreign object's content also counts as a leak of its
    existence only where noted)."""
    today = _today().isoformat()
    writes = {
        "patch channel": ("patch", f"{WB}/channels/{ids['channel_id']}", {"name": "x"}),
        "delete channel": ("delete", f"{WB}/channels/{ids['channel_id']}", None),
        "patch template": ("patch", f"{WB}/welcome-templates/{ids['template_id']}", {"text": "被改了"}),
        "delete material": ("delete", f"{WB}/materials/{ids['material_id']}", None),
        "channel with foreign template": (
            "post",
            f"{WB}/channels",
            {
                "name": "n",
                "kind": "store",
                "state": "probe-own",
                "userids": [own_userid],
                "store_id": own_store_id,
                "welcome_template_id": ids["template_id"],
            },
        ),
        "template with foreign material": (
            "post",
            f"{WB}/welcome-templates",
            {
                "name": "n",
                "store_id": own_store_id,
                "attachments": [{"msgtype": "image", "image": {"material_id": ids["material_id"]}}],
            },
        ),
        "mark tags": ("post", f"{WB}/customers/{ids['customer_id']}/tags", {"add_tag_ids": ["etProbe"]}),
        "handover of foreign advisor": (
            "post",
            f"{WB}/handovers",
            {"kind": "on_duty", "handover_staff_id": ids["advisor_id"], "takeover_staff_id": ids["advisor_id"] + 0},
        ),
        "behaviour pull foreign advisor": (
            "post",
            f"{WB}/behaviour/pull",
            {"start_date": today, "end_date": today, "staff_id": ids["advisor_id"]},
        ),
    }
    leaks: dict[str, Any] = {}
    for name, (method, url, body) in writes.items():
        resp = client.open(url, method=method.upper(), headers=headers, json=body)
        if resp.status_code not in (403, 404) or error_shape_problem(resp):
            leaks[name] = (resp.status_code, str(resp.get_json())[:200])
    return leaks


@pytest.fixture
def two_stores(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any, db_session: Any) -> dict[str, Any]:
    """Corp A, stores 0 and 1 of region 0, store 2 of region 1: an advisor and a manager at stores
    0 and 1, a region manager of region 1, marketing; the store-1 objects."""
    corp = sandbox_reset.credentials["WECOM_CORP_ID"]
    adv0 = make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    adv1 = make_staff(tree.stores[1], "sales_advisor", userid="advisor.s1", name="一店顾问")
    mgr0 = make_staff(tree.stores[0], "store_manager", userid="mgr0")
    rmgr1 = make_staff(tree.regions[1], "region_manager", userid="rmgr1")
    ids = store_objects(db_session, corp, tree.stores[1], adv1, "S1")
    own = store_objects(db_session, corp, tree.stores[0], adv0, "S0")
    headers = {
        "advisor0": staff_headers(adv0),
        "manager0": staff_headers(mgr0),
        "region1": staff_headers(rmgr1),
    }
    db_session.commit()
    return {"ids": ids, "own": own, "headers": headers, "store0": tree.stores[0].id, "store2": tree.stores[2].id}


@pytest.mark.parametrize("who", ["advisor0", "manager0", "region1"])
def test_another_stores_wecom_objects_are_not_read(client: Any, two_stores: dict[str, Any], who: str) -> None:
    """Store 0's advisor and manager, and region 1's manager, reach none of store 1's objects."""
    assert visible(client, two_stores["headers"][who], two_stores["ids"]) == {}


def test_an_advisor_reads_none_of_their_colleagues_store_objects(client: Any, two_stores: dict[str, Any]) -> None:
    """An advisor's own store: the channel, handover and behaviour of the store are the managers';
    an advisor sees their own lost customers and group chats only (these are theirs here)."""
    seen = visible(client, two_stores["headers"]["advisor0"], two_stores["own"])
    assert set(seen) <= {"lost-customers", "group-chats", "behaviour", "behaviour by staff"}, seen


@pytest.mark.parametrize("who", ["manager0", "region1"])
def test_another_stores_wecom_objects_are_not_changed(client: Any, two_stores: dict[str, Any], who: str) -> None:
    own_store = two_stores["store0"] if who == "manager0" else two_stores["store2"]
    own_userid = ZHANG if who == "manager0" else "nobody.here"
    assert changes(client, two_stores["headers"][who], two_stores["ids"], own_store, own_userid) == {}


def test_advisor_is_refused_every_foreign_write(client: Any, two_stores: dict[str, Any]) -> None:
    assert changes(client, two_stores["headers"]["advisor0"], two_stores["ids"], two_stores["store0"], ZHANG) == {}
