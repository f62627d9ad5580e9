"""welcome templates — byte limits with multi-byte text, attachment field limits,
the 9-attachment limit through PATCH, what is sent with a WelcomeCode, odd text.

Written as review probes: those that showed a defect (since fixed) say what failed."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.wecom.helpers import ZHANG, add_store_channel, contact_xml, post_event

TEMPLATES = "/api/workbench/v1/wecom/welcome-templates"
LINK = {"msgtype": "link", "link": {"title": "保养", "url": "https://e.x/b"}}


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    manager = make_staff(tree.stores[0], "store_manager", userid="mgr0")
    return {"sb": sandbox_reset, "store0": tree.stores[0].id, "h": staff_headers(manager)}


def post_template(client: Any, world: Any, **fields: Any) -> Any:
    return client.post(TEMPLATES, headers=world["h"], json={"name": "t", "store_id": world["store0"], **fields})


def error_format(resp: Any) -> bool:
    body = resp.get_json() or {}
    return {"code", "status", "message"} <= set(body) and body["status"] == resp.status_code


# --- checks that held on review


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("您" * 1333 + "a", 201),  # exactly 4000 bytes, 3-byte characters
        ("😀" * 1000, 201),  # exactly 4000 bytes, 4-byte characters
        ("😀" * 1000 + "a", 422),  # 4001 bytes
        ("您" * 1334, 422),  # 4002 bytes, only 1334 characters
    ],
)
def test_text_limit_is_4000_bytes_not_characters(client: Any, world: Any, text: str, status: int) -> None:
    resp = post_template(client, world, text=text)
    assert resp.status_code == status, resp.get_json()
    if status == 201:
        assert resp.get_json()["text"] == text  # 4-byte characters survive the database (utf8mb4)
    else:
        assert error_format(resp)


def test_a_4000_byte_emoji_welcome_is_sent_intact_and_a_grown_one_is_cut_cleanly(
    client: Any, db_session: Any, world: Any
) -> None:
    sb = world["sb"]
    text = "😀" * 996 + "{advisor_name}"  # 3984 bytes as written, 3993 once the name is in
    template = post_template(client, world, text=text).get_json()
    add_store_channel(db_session, sb, world["store0"], "emoji-qr", [ZHANG], welcome_template_id=template["id"])
    sb.state.add_external_contact("wmEmoji", "客户", follow_userid=ZHANG, state="emoji-qr")
    code = sb.state.issue_welcome_code(ZHANG, "wmEmoji")
    xml = contact_xml(
        sb, "add_external_contact", ZHANG, "wmEmoji", int(time.time()), State="emoji-qr", WelcomeCode=code
    )
    assert post_event(client, sb, xml).data == b"success"
    (sent,) = sb.state.welcome_messages
    assert sent["text"]["content"] == "😀" * 996 + "张顾问"
    from backend.wecom.welcome import render

    cut = render("😀" * 999 + "{advisor_name}", {"advisor_name": "张顾问"})
    assert len(cut.encode()) <= 4000 and cut.startswith("😀" * 999) and "\ufffd" not in cut


@pytest.mark.parametrize(
    ("attachment", "status"),
    [
        ({"msgtype": "link", "link": {"title": "车" * 42 + "ab", "url": "https://e.x"}}, 201),  # 128 bytes
        ({"msgtype": "link", "link": {"title": "t", "url": "https://e.x", "desc": "述" * 170 + "ab"}}, 201),  # 512
        ({"msgtype": "link", "link": {"title": "t", "url": "https://e.x", "desc": "述" * 171}}, 422),  # 513
        (
            {
                "msgtype": "miniprogram",
                "miniprogram": {"title": "车" * 22, "appid": "wx1", "page": "/p", "pic_material_id": 1},
            },
            422,
        ),
        ({"msgtype": "miniprogram", "miniprogram": {"appid": "wx1", "page": "/p", "pic_material_id": 1}}, 422),
        ({"msgtype": "miniprogram", "miniprogram": {"title": "t", "page": "/p", "pic_material_id": 1}}, 422),
        ({"msgtype": "miniprogram", "miniprogram": {"title": "t", "appid": "wx1", "pic_material_id": 1}}, 422),
    ],
)
def test_attachment_field_limits(client: Any, world: Any, attachment: dict, status: int) -> None:
    resp = post_template(client, world, text="hi", attachments=[attachment])
    assert resp.status_code == status, resp.get_json()


def test_nine_attachments_by_patch_and_a_tenth_refused(client: Any, world: Any) -> None:
    template = post_template(client, world, text="hi").get_json()
    url = f"{TEMPLATES}/{template['id']}"
    assert client.patch(url, headers=world["h"], json={"attachments": [LINK] * 9}).status_code == 200
    ten = client.patch(url, headers=world["h"], json={"attachments": [LINK] * 10})
    assert (ten.status_code, ten.get_json()["code"]) == (422, "request.invalid") and error_format(ten)


# --- defects found on review, since fixed


@pytest.mark.parametrize("field", ["text", "name"])
def test_a_lone_surrogate_in_a_template_is_4xx_not_500(client: Any, world: Any, field: str) -> None:
    """Was a defect: "\\ud800" is valid JSON; `_check_text` (len(value.encode())) or the database
    driver raises UnicodeEncodeError, answered 500 instead of a 422."""
    other = "name" if field == "text" else "text"
    raw = '{"%s": "\\ud800", "%s": "x", "store_id": %d}' % (field, other, world["store0"])  # noqa: UP031
    resp = client.post(TEMPLATES, headers={**world["h"], "Content-Type": "application/json"}, data=raw)
    assert resp.status_code < 500, (resp.status_code, resp.get_json())


def test_changing_a_welcome_template_is_audited(client: Any, db_session: Any, world: Any) -> None:
    """Was a defect: Every other configuration update in the codebase is audited
    (coupon_template.updated, campaign.updated, event.updated, segment.updated, ...), and
    materials are; creating or rewriting the welcome every new customer of a store receives
    leaves no audit row."""
    from sqlalchemy import select

    from backend.platform.audit import AuditLog

    template = post_template(client, world, text="您好").get_json()
    patched = client.patch(f"{TEMPLATES}/{template['id']}", headers=world["h"], json={"text": "改过的欢迎语"})
    assert patched.status_code == 200
    db_session.expire_all()
    actions = [a.action for a in db_session.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert any(a.startswith("wecom.template") for a in actions), actions
