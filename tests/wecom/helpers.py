"""Helpers for the WeCom tests: encrypted callbacks from the sandbox, posted to the real endpoint."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from typing import Any

from sqlalchemy import func, select

from backend.platform.db import db
from backend.platform.jobs import OutboxJob, relay
from tests.threads import run_threads

URL = "/callbacks/wecom"


def contact_xml(sandbox: Any, change_type: str, userid: str, ext: str, create_time: int, **extra: str) -> str:
    corp = sandbox.credentials["WECOM_CORP_ID"]
    return sandbox.state.change_external_contact_xml(corp, change_type, userid, ext, create_time, **extra)


def post_event(client: Any, sandbox: Any, xml: str, **kwargs: Any) -> Any:
    params, body = sandbox.state.wecom_callback(xml, **kwargs)
    return client.post(URL, query_string=params, data=body, content_type="text/xml")


def now() -> int:
    """The current time as WeCom stamps events (whole seconds)."""
    return int(time.time())


def ok(resp: Any) -> None:
    """The callback endpoint answered "success" (else the body's start is shown)."""
    assert (resp.status_code, resp.data) == (200, b"success"), resp.get_data(as_text=True)[:300]


def friend_of(session: Any, userid: str, ext: str) -> Any:
    """The relation (WeComFriend) of member `userid` and contact `ext`, read afresh; there must be one."""
    from backend.wecom.models import WeComFriend

    session.expire_all()
    return session.scalars(
        select(WeComFriend).where(WeComFriend.userid == userid, WeComFriend.external_userid == ext)
    ).one()


def carried(session: Any, friend_id: int) -> set[str]:
    """The tag ids the relation `friend_id` carries, read afresh."""
    from backend.wecom.models import WeComFriendTag

    session.expire_all()
    return set(session.scalars(select(WeComFriendTag.tag_id).where(WeComFriendTag.friend_id == friend_id)))


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """The callback endpoint's URL on the app served over real HTTP (for `wecom_emit.emit` over
    sockets). Needs a `dbcommit` test: request threads use their own database connections."""
    from tests.live import live_app

    with live_app(app) as base:
        yield base + URL


def count_rows(session: Any, model: Any, *where: Any) -> int:
    """Rows of `model` matching `where`, read afresh (other sessions may have written them)."""
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model).where(*where))


def add_store_channel(session: Any, sandbox: Any, store_id: int, state: str, userids: list[str], **extra: Any) -> Any:
    """A store's channel as dealerloop keeps it (no contact way made in WeCom), committed."""
    from backend.wecom.models import WeComChannel

    channel = WeComChannel(
        corp_id=sandbox.credentials["WECOM_CORP_ID"],
        name="门店0",
        kind="store",
        state=state,
        store_id=store_id,
        userids=userids,
        **extra,
    )
    session.add(channel)
    session.commit()
    return channel


CHANNELS = "/api/workbench/v1/wecom/channels"
ZHANG = "advisor.zhang"


def channel_world(
    sandbox: Any, tree: Any, make_staff: Any, staff_headers: Any, *more_advisors: tuple[str, str]
) -> dict[str, Any]:
    """Store 0 with sales advisor Zhang, then `more_advisors` ((userid, name) each), then its store
    manager (mgr0): the sandbox ("sb"), the tree, Zhang's Staff ("zhang") and the manager's
    headers ("h"), the one who creates the channels."""
    zhang = make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    for userid, name in more_advisors:
        make_staff(tree.stores[0], "sales_advisor", userid=userid, name=name)
    manager = make_staff(tree.stores[0], "store_manager", userid="mgr0")
    return {"sb": sandbox, "tree": tree, "zhang": zhang, "h": staff_headers(manager)}


def post_channel(client: Any, headers: dict[str, str], store_id: Any, userids: list[str], /, **overrides: Any) -> Any:
    """POST a channel (门店0活码, kind store, state store0-qr) of `store_id` for `userids`: the response.
    `overrides` add or replace fields of the body, `store_id` and `userids` too."""
    body = {"name": "门店0活码", "kind": "store", "state": "store0-qr", "userids": userids, "store_id": store_id}
    return client.post(CHANNELS, headers=headers, json={**body, **overrides})


def create_channel(client: Any, headers: dict[str, str], store_id: Any, userids: list[str], /, **overrides: Any) -> Any:
    """`post_channel`, which must answer 201: the channel created (JSON)."""
    resp = post_channel(client, headers, store_id, userids, **overrides)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def channel_stats(
    client: Any, headers: dict[str, str], channel_id: int, date_from: str, date_to: str | None = None
) -> list[dict[str, Any]]:
    """A channel's statistics from `date_from` to `date_to` (that one day unless given), which
    must answer 200: a row a day."""
    query = {"date_from": date_from, "date_to": date_to or date_from}
    resp = client.get(f"{CHANNELS}/{channel_id}/stats", headers=headers, query_string=query)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def contact_way(sandbox: Any, config_id: str) -> dict[str, Any]:
    """The contact way as the sandbox holds it now (a copy)."""
    with sandbox.state.lock:
        return dict(sandbox.state.contact_ways[config_id])


def callback_world(sandbox: Any, tree: Any, make_staff: Any) -> dict[str, Any]:
    """Advisor Zhang (advisor.zhang) and store manager Li (advisor.li) at store 0, and a group
    admin: their Staff, the sandbox ("sandbox") and the tree."""
    advisor = make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    manager = make_staff(tree.stores[0], "store_manager", userid="advisor.li", name="李店长")
    admin = make_staff(tree.group, "group_admin", userid="admin")
    return {"sandbox": sandbox, "advisor": advisor, "manager": manager, "admin": admin, "tree": tree}


def tag_id(sandbox: Any, name: str) -> str:
    """The id of the sandbox's tag called `name`."""
    for group in sandbox.state.tag_groups.values():
        for tag in group["tag"]:
            if tag["name"] == name:
                return tag["id"]
    raise KeyError(name)


def befriend_and_sync_tags(
    client: Any, session: Any, sandbox: Any, staff_headers: Any, admin: Any, userid: str, customer: str
) -> Any:
    """`customer` adds `userid` now (an add_external_contact callback), then `admin` syncs the tag
    library: the new relation (WeComFriend). The admin's headers are made after the callback:
    reading the admin opens `session`'s transaction, whose snapshot must hold the relation."""
    from backend.wecom.models import WeComFriend

    xml = contact_xml(sandbox, "add_external_contact", userid, customer, int(time.time()))
    added = post_event(client, sandbox, xml)
    assert (added.status_code, added.data) == (200, b"success")
    sync = client.post("/api/workbench/v1/wecom/tags/sync", headers=staff_headers(admin), json={})
    assert sync.status_code == 202
    return session.scalars(select(WeComFriend).where(WeComFriend.external_userid == customer)).one()


def upstream_calls(sandbox: Any, path: str) -> list[dict[str, Any]]:
    """Requests the sandbox received under `path` with a token it had issued: a call made with a
    token cached before the sandbox was reset (answered 40014, then retried once with a fresh
    token) is left out, so counts do not depend on the order tests run in."""
    with sandbox.state.lock:
        issued = set(sandbox.state.tokens)
    return [c for c in sandbox.state.received(path, "wecom") if c["query"].get("access_token") in issued]


def run_due_jobs(app: Any, rounds: int = 10) -> None:
    """Relay outbox rows until none is left: delayed retries are made due at once (no sleeping)."""
    from sqlalchemy import update

    for _ in range(rounds):
        with app.app_context():
            session = db.session_factory()
            # By primary key, in order — as a worker finishing a job locks its row — not by a
            # scan of the status index, whose lock order against a job finishing inline on
            # another thread deadlocked.
            delayed = session.scalars(
                select(OutboxJob.id)
                .where(OutboxJob.status == "pending", OutboxJob.run_after.is_not(None))
                .order_by(OutboxJob.id)
            ).all()
            if delayed:
                session.execute(update(OutboxJob).where(OutboxJob.id.in_(delayed)).values(run_after=None))
            session.commit()
            pending = session.scalar(select(OutboxJob.id).where(OutboxJob.status == "pending").limit(1))
            session.close()
            if pending is None:
                return
            relay(app=app)


def execute_at_once(app: Any, job_ids: list[int]) -> list[Any]:
    """The outbox jobs `job_ids` run on a thread each (real workers), released at once: each
    job's outcome, or the exception it raised, in order."""
    from backend.platform import jobs

    return run_threads(len(job_ids), lambda i: jobs.execute(job_ids[i], app=app))


def foreign_wecom_ids(session: Any, store: Any) -> dict[str, int]:
    """Out-of-scope objects for tests/test_scope_enumeration.py (a store manager elsewhere)."""
    from backend.wecom.models import WeComChannel, WeComMaterial, WeComRawEvent, WelcomeTemplate

    raw = WeComRawEvent(corp_id="c", dedup_hash="f" * 64, dedup_key="k", event="e", xml="<xml/>", status="dead")
    template = WelcomeTemplate(name="t", store_id=store.id, text="hi")
    material = WeComMaterial(
        name="m.png", store_id=store.id, kind="image", content_type="image/png", size=5, sha256="0" * 64, content=b"x"
    )
    session.add_all([raw, template, material])
    session.flush()
    channel = WeComChannel(corp_id="c", name="c", kind="store", state="foreign", store_id=store.id, userids=["u"])
    session.add(channel)
    session.flush()
    return {"raw_event_id": raw.id, "template_id": template.id, "channel_id": channel.id, "material_id": material.id}


MATERIALS = "/api/workbench/v1/wecom/materials"
# The smallest bytes each kind's check accepts: a PNG signature, an MP4 `ftyp` box, any file.
SAMPLE = {
    "image": b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
    "video": b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64,
    "file": "保养手册".encode() * 8,
}


def upload_material(client: Any, headers: dict[str, str], kind: str, store_id: int | None, **extra: Any) -> Any:
    """POST a material as multipart/form-data (the sample bytes of its kind unless `content`).
    The body is encoded here, in memory: the test client would spool a large one to a temporary
    file that it never closes."""
    from werkzeug.datastructures import FileStorage
    from werkzeug.test import encode_multipart

    content = extra.pop("content", None) or SAMPLE[kind]
    form: dict[str, Any] = {
        "kind": kind,
        "file": FileStorage(BytesIO(content), filename=extra.pop("filename", f"sample.{kind}")),
    }
    if store_id is not None:
        form["store_id"] = str(store_id)
    form.update(extra)
    boundary, body = encode_multipart(form)
    return client.post(MATERIALS, headers=headers, data=body, content_type=f"multipart/form-data; boundary={boundary}")


def encoding_aes_key() -> str:
    """A fresh EncodingAESKey: 43 alphanumerics, as WeCom issues them."""
    import base64
    import os

    while True:
        candidate = base64.b64encode(os.urandom(32)).decode().rstrip("=")
        if candidate.isalnum():
            return candidate


@contextmanager
def second_wecom_app(
    app: Any, sandbox: Any, monkeypatch: Any, corp_id: str = "wwSecondCorp000002"
) -> Iterator[tuple[Any, dict[str, str]]]:
    """A second self-built app (of another corp unless `corp_id` is the first's), configured
    like one from WECOM_EXTRA_APPS, served by a sandbox of its own: (that sandbox, its
    credentials)."""
    from integrations.sandbox import SandboxServer, create_sandbox
    from integrations.wecom.apps import add_wecom_apps
    from tests.sandbox_fixtures import TEST_APP_HOST

    creds = dict(
        sandbox.credentials,
        WECOM_CORP_ID=corp_id,
        WECOM_AGENT_ID="1000009",
        WECOM_SECRET="S" * 43,
        WECOM_CALLBACK_TOKEN="tokenOfTheSecondApp01",
        WECOM_CALLBACK_AES_KEY=encoding_aes_key(),
    )
    second = SandboxServer(create_sandbox(creds, seed=False, trusted_hosts=[TEST_APP_HOST]))  # as the first's
    base = second.start()
    try:
        gateways = app.extensions["dealerloop.gateways"]
        monkeypatch.setitem(gateways.extra, "wecom_apps", [])
        monkeypatch.setitem(gateways.extra, "wecom_callback_more", [])
        monkeypatch.setitem(app.extensions, "dealerloop.wecom_callback_apps", None)  # rebuilt with both apps
        extra = {
            "corp_id": creds["WECOM_CORP_ID"],
            "agent_id": creds["WECOM_AGENT_ID"],
            "secret": creds["WECOM_SECRET"],
            "token": creds["WECOM_CALLBACK_TOKEN"],
            "aes_key": creds["WECOM_CALLBACK_AES_KEY"],
            "api_base": base + "/wecom",
            "oauth_base": base + "/wecom",  # its sandbox plays WeCom's authorize page for its corp
        }
        add_wecom_apps(gateways, {"WECOM_EXTRA_APPS": [extra], "UPSTREAM_TIMEOUT": 2.0})
        yield second, creds
    finally:
        second.stop()


def sign_post(client: Any, creds: dict[str, str], xml: str) -> None:
    """`xml` as a callback of the app with `creds` (signed and encrypted with its token and key),
    posted to the real endpoint, which must answer "success"."""
    from integrations.sandbox.wecom_emit import sign_event

    params, body = sign_event(xml, creds)
    resp = client.post(URL, query_string=params, data=body, content_type="text/xml")
    assert (resp.status_code, resp.data) == (200, b"success")


def corp_staff(session: Any, corp: str, store: Any, userid: str, role: str, name: str) -> Any:
    """An active staff member of `corp` (not the primary's unless named) at `store` holding `role`, committed."""
    from backend.org.models import Role, Staff, StaffRole

    staff = Staff(corp_id=corp, wecom_userid=userid, name=name, org_unit_id=store.id, status="active")
    staff.role_rows = [StaffRole(role=Role(role))]
    session.add(staff)
    session.commit()
    return staff


@contextmanager
def corp_b_world(
    app: Any,
    client: Any,
    db_session: Any,
    sandbox_reset: Any,
    tree: Any,
    make_staff: Any,
    monkeypatch: Any,
    *,
    a_tag: bool = False,
    b_tags: bool = True,
) -> Iterator[dict[str, Any]]:
    """Corp A: the usual callback world (advisor.zhang, advisor.li at store 0, admin), with its tag
    SUV in the library if `a_tag` ("a_tag"). Corp B (the second app): manager mgr.b and advisor
    adv.two at store 1, customer wmSecondCorp1 befriended by adv.two through a real corp-B
    callback ("friend_b"), and unless not `b_tags` tag B级 in corp B's sandbox and library
    ("b_tag")."""
    from backend.wecom.models import WeComFriend, WeComTag

    world = callback_world(sandbox_reset, tree, make_staff)
    corp_a = world["admin"].corp_id
    tags: dict[str, Any] = {}
    if a_tag:
        tags["a_tag"] = tag_id(sandbox_reset, "SUV")
        db_session.add(WeComTag(corp_id=corp_a, tag_id=tags["a_tag"], group_id="gA", group_name="车型", name="SUV"))
        db_session.commit()
    with second_wecom_app(app, sandbox_reset, monkeypatch) as (second, creds):
        corp_b = creds["WECOM_CORP_ID"]
        store = tree.stores[1]
        manager = corp_staff(db_session, corp_b, store, "mgr.b", "store_manager", "B店长")
        advisor = corp_staff(db_session, corp_b, store, "adv.two", "sales_advisor", "二号顾问")
        second.state.add_member("mgr.b", "B店长")
        second.state.add_member("adv.two", "二号顾问")
        if b_tags:
            group = second.state.add_tag_group("B客户等级", ["B级"])
            tags["b_tag"] = group["tag"][0]["id"]
        second.state.add_external_contact("wmSecondCorp1", "王先生", follow_userid="adv.two")
        xml = second.state.change_external_contact_xml(
            corp_b, "add_external_contact", "adv.two", "wmSecondCorp1", int(time.time())
        )
        sign_post(client, creds, xml)
        run_due_jobs(app)
        db_session.expire_all()
        friend = db_session.scalars(select(WeComFriend).where(WeComFriend.external_userid == "wmSecondCorp1")).one()
        assert friend.corp_id == corp_b and friend.staff_id == advisor.id
        if b_tags:
            # corp B's tag library as a sync (or a tag callback) would have stored it
            db_session.add(
                WeComTag(
                    corp_id=corp_b, tag_id=tags["b_tag"], group_id=group["group_id"], group_name="B客户等级", name="B级"
                )
            )
            db_session.commit()
        yield {
            **world,
            **tags,
            "corp_a": corp_a,
            "second": second,
            "creds": creds,
            "corp_b": corp_b,
            "manager_b": manager,
            "advisor_b": advisor,
            "friend_b": friend,
        }
