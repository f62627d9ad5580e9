"""Welcome templates and their sending: variables are substituted in one pass, a template always
has something to send, a rate-limited welcome is tried again while its code lives, and only an
add that carries a WelcomeCode (a half add included) gets a welcome."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from backend.wecom.models import WelcomeMessage, WelcomeTemplate
from backend.wecom.welcome import render
from tests.wecom.helpers import contact_xml, post_event, run_due_jobs
from tests.wecom.test_channels_welcome import CUSTOMER, TEMPLATES, ZHANG, add_with_code, channel_with_template

LINK = {"msgtype": "link", "link": {"title": "保养预约", "url": "https://e.x/b"}}


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    zhang = make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    manager = make_staff(tree.stores[0], "store_manager", userid="mgr0")
    # The store's id read now: a refused request's rollback expires the tree's objects.
    store_id = tree.stores[0].id
    return {"sb": sandbox_reset, "tree": tree, "zhang": zhang, "h": staff_headers(manager), "store_id": store_id}


def create(client: Any, world: Any, **body: Any) -> Any:
    return client.post(TEMPLATES, headers=world["h"], json={"name": "欢迎", "store_id": world["store_id"]} | body)


# --- render ---------------------------------------------------------------------------------


def test_a_customer_name_is_not_read_as_a_template_variable() -> None:
    """A WeChat nickname is free text: a customer called "{advisor_name}" is greeted by that name,
    since a substituted value is not scanned again for variables."""
    text = render(
        "{customer_name}您好，我是{advisor_name}", {"customer_name": "{advisor_name}", "advisor_name": "张顾问"}
    )
    assert text == "{advisor_name}您好，我是张顾问"


def test_render_leaves_other_braces_and_takes_values_literally() -> None:
    """Unknown names and stray braces stay as written, a missing value is blank, and a value is
    put in as it is (no regex escapes read in a nickname)."""
    values = {"customer_name": r"王\1\g<0>", "store_name": "{unknown}"}
    assert render("{{customer_name}} {unknown} {advisor_name}| {store_name} {", values) == (
        r"{王\1\g<0>} {unknown} | {unknown} {"
    )


# --- a template has something to send -------------------------------------------------------


@pytest.mark.parametrize("text", ["", "  \n\t"])
def test_a_template_without_text_or_attachments_is_refused(client: Any, db_session: Any, world: Any, text: str) -> None:
    """WeCom answers 40058 to a welcome without text and attachments, so a template with neither
    (blank text counts as none) would fail every welcome of its channels: refused, not stored."""
    resp = create(client, world, text=text)
    assert (resp.status_code, resp.get_json()["code"]) == (422, "wecom.template_empty"), resp.get_json()
    assert resp.get_json()["message"] == "欢迎语需要文字或至少一个附件"
    assert db_session.scalars(select(WelcomeTemplate)).all() == []
    # without text at all, too; and an attachment alone is enough
    assert create(client, world).status_code == 422
    assert create(client, world, attachments=[LINK]).status_code == 201


def test_a_template_cannot_be_emptied_by_patch(client: Any, db_session: Any, world: Any) -> None:
    """A PATCH is checked against the template as it would be (the request merged with what is
    stored): clearing the only content is refused, clearing one of two is not."""
    text_only = create(client, world, text="您好").get_json()["id"]
    for body in ({"text": ""}, {"text": " "}, {"text": "", "attachments": []}):
        resp = client.patch(f"{TEMPLATES}/{text_only}", headers=world["h"], json=body)
        assert (resp.status_code, resp.get_json()["code"]) == (422, "wecom.template_empty"), body
    db_session.expire_all()
    assert db_session.get(WelcomeTemplate, text_only).text == "您好"
    assert client.patch(f"{TEMPLATES}/{text_only}", headers=world["h"], json={"name": "改名"}).status_code == 200

    both = create(client, world, text="您好", attachments=[LINK]).get_json()["id"]
    cleared = client.patch(f"{TEMPLATES}/{both}", headers=world["h"], json={"text": ""})
    assert (cleared.status_code, cleared.get_json()["attachments"]) == (200, [LINK])
    resp = client.patch(f"{TEMPLATES}/{both}", headers=world["h"], json={"attachments": []})
    assert (resp.status_code, resp.get_json()["code"]) == (422, "wecom.template_empty")


# --- sending --------------------------------------------------------------------------------


def test_a_rate_limited_welcome_is_retried_inside_the_window(client: Any, db_session: Any, world: Any) -> None:
    """WeCom answers 45009 (rate limited) to the first send_welcome_msg: the welcome is tried
    again while its code lives (20 s) and goes out once."""
    sb = world["sb"]
    channel_with_template(client, db_session, world, [])
    sb.state.set_fault(
        "errcode", errcode=45009, service="wecom", path="/cgi-bin/externalcontact/send_welcome_msg", count=1
    )
    resp, _ = add_with_code(client, sb)
    assert resp.data == b"success"
    run_due_jobs(client.application)
    db_session.expire_all()
    row = db_session.scalars(select(WelcomeMessage)).one()
    assert (row.status, row.errcode) == ("sent", None)
    assert len(sb.state.welcome_messages) == 1


def test_a_half_add_gets_its_welcome_and_an_add_without_code_none(client: Any, db_session: Any, world: Any) -> None:
    """add_half_external_contact carries a WelcomeCode: the welcome goes with it and is linked to
    the customer. An add without WelcomeCode (a welcome set in the WeCom console) sends nothing."""
    sb = world["sb"]
    channel_with_template(client, db_session, world, [])
    code = sb.state.issue_welcome_code(ZHANG, CUSTOMER)
    t = int(time.time())
    post_event(
        client,
        sb,
        contact_xml(sb, "add_half_external_contact", ZHANG, CUSTOMER, t, State="welcome-qr", WelcomeCode=code),
    )
    post_event(client, sb, contact_xml(sb, "add_external_contact", ZHANG, "wmDemoCustomer002", t, State="welcome-qr"))
    run_due_jobs(client.application)
    db_session.expire_all()
    rows = db_session.scalars(select(WelcomeMessage)).all()
    assert [(r.status, r.customer_id is not None) for r in rows] == [("sent", True)]
    assert len(sb.state.welcome_messages) == 1
