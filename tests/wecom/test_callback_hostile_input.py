"""the WeCom callback (`/callbacks/wecom`) answers unsigned junk, broken envelopes and
correctly signed but oddly shaped events with a 4xx in the one error format or `success`; an
accepted odd event ends processed, ignored or dead (never stuck, never a crash out of the job
runner), and the dead-letter endpoints then inspect and replay it without a 500."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from tests.wecom.helpers import URL, ZHANG, callback_world, post_event, run_due_jobs
from tests.wecom.test_api_hostile_input import error_shape_problem

EVENTS = "/api/workbench/v1/wecom/events"


def _xml(corp: str, body: str, create_time: int | None = None) -> str:
    ct = create_time if create_time is not None else int(time.time())
    return (
        f"<xml><ToUserName><![CDATA[{corp}]]></ToUserName><FromUserName>sys</FromUserName>"
        f"<CreateTime>{ct}</CreateTime><MsgType>event</MsgType>{body}</xml>"
    )


def _contact(change_type: str, userid: str = ZHANG, ext: str = "wmProbe1", extra: str = "") -> str:
    return (
        f"<Event>change_external_contact</Event><ChangeType>{change_type}</ChangeType>"
        f"<UserID>{userid}</UserID><ExternalUserID>{ext}</ExternalUserID>{extra}"
    )


LONG = "u" * 300
ODD_EVENTS: dict[str, str] = {
    "userid dict": _contact("add_external_contact", userid="<a>1</a>"),
    "userid repeated": _contact("add_external_contact", extra=f"<UserID>{ZHANG}</UserID>"),
    "ext repeated": _contact("add_external_contact", extra="<ExternalUserID>wmProbe2</ExternalUserID>"),
    "ext nested": _contact("edit_external_contact", ext="<x>wm</x>"),
    "userid long": _contact("add_external_contact", userid=LONG),
    "ext long": _contact("add_external_contact", ext="wm" + "x" * 300),
    "state long": _contact("add_external_contact", extra=f"<State>{'s' * 300}</State>"),
    "state dict": _contact("add_external_contact", extra="<State><a>1</a></State>"),
    "welcome code dict": _contact("add_external_contact", extra="<WelcomeCode><a>1</a></WelcomeCode>"),
    "welcome code repeated": _contact(
        "add_external_contact", extra="<WelcomeCode>c1</WelcomeCode><WelcomeCode>c2</WelcomeCode>"
    ),
    "unknown change": _contact("no_such_change"),
    "change type dict": _contact("<a>b</a>"),
    "del follow user": _contact("del_follow_user"),
    "del external": _contact("del_external_contact", extra="<Source>DELETE_BY_TRANSFER</Source>"),
    "transfer fail": _contact("transfer_fail", extra="<FailReason>customer_refused</FailReason>"),
    "unicode userid": _contact("add_external_contact", userid="张三😀"),
    "no userid": "<Event>change_external_contact</Event><ChangeType>add_external_contact</ChangeType>"
    "<ExternalUserID>wmProbe3</ExternalUserID>",
    "no ext": "<Event>change_external_contact</Event><ChangeType>add_external_contact</ChangeType>"
    f"<UserID>{ZHANG}</UserID>",
    "chat update odd": "<Event>change_external_chat</Event><ChatId>wrChat1</ChatId><ChangeType>update</ChangeType>"
    "<UpdateDetail>add_member</UpdateDetail><JoinScene>x</JoinScene><QuitScene>y</QuitScene>"
    "<MemChangeCnt>abc</MemChangeCnt><MemChangeList><Item><a>1</a></Item></MemChangeList>"
    "<LastMemVer>1</LastMemVer><CurMemVer>2</CurMemVer>",
    "chat update cnt huge": "<Event>change_external_chat</Event><ChatId>wrChat2</ChatId>"
    "<ChangeType>update</ChangeType>"
    f"<UpdateDetail>add_member</UpdateDetail><MemChangeCnt>{2**70}</MemChangeCnt>"
    "<MemChangeList><Item>wmProbe4</Item></MemChangeList>",
    "chat dismiss no id": "<Event>change_external_chat</Event><ChangeType>dismiss</ChangeType>",
    "chat create long id": f"<Event>change_external_chat</Event><ChatId>{'c' * 300}</ChatId>"
    "<ChangeType>create</ChangeType>",
    "tag odd": "<Event>change_external_tag</Event><Id>et1</Id><TagType>weird</TagType><ChangeType>update</ChangeType>",
    "tag dict id": "<Event>change_external_tag</Event><Id><a>1</a></Id><TagType>tag</TagType>"
    "<ChangeType>delete</ChangeType>",
    "tag shuffle": "<Event>change_external_tag</Event><Id>etg1</Id><TagType>tag_group</TagType>"
    "<ChangeType>shuffle</ChangeType><StrategyId>abc</StrategyId>",
    "contact user odd": "<Event>change_contact</Event><ChangeType>update_user</ChangeType><UserID>x</UserID>"
    f"<NewUserID>{LONG}</NewUserID><Status>9</Status><Department>a,b</Department>",
    "contact party odd": "<Event>change_contact</Event><ChangeType>create_party</ChangeType>"
    f"<Id>{2**70}</Id><ParentId>-1</ParentId><Name>{'部' * 300}</Name>",
    "contact party dict": "<Event>change_contact</Event><ChangeType>delete_party</ChangeType><Id><a>1</a></Id>",
    "unknown event": "<Event>something_new</Event>",
    "msgtype only": "",
}


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any, db_session: Any) -> dict[str, Any]:
    w = callback_world(sandbox_reset, tree, make_staff)
    w["admin_h"] = staff_headers(w["admin"])
    w["corp"] = sandbox_reset.credentials["WECOM_CORP_ID"]
    # Close the read transaction the headers opened: inline jobs share this thread's session,
    # and a rollback there would undo the callback's insert made after it (a harness artifact).
    db_session.commit()
    return w


def _problem(resp: Any) -> str | None:
    if resp.status_code >= 500:
        return f"{resp.status_code} {resp.get_data(as_text=True)[:300]}"
    if resp.status_code >= 400:
        return error_shape_problem(resp)
    return None


def test_unsigned_and_broken_requests_are_4xx_in_format(client: Any, world: dict[str, Any]) -> None:
    sb = world["sandbox"]
    params, good_body = sb.state.wecom_callback(_xml(world["corp"], _contact("add_external_contact")))
    enc = good_body.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    corp = world["corp"]
    cases: dict[str, tuple[dict[str, str], Any, str]] = {
        "no params": ({}, good_body, "text/xml"),
        "bad signature": ({**params, "msg_signature": "0" * 40}, good_body, "text/xml"),
        "stale": ({**params, "timestamp": "1"}, good_body, "text/xml"),
        "timestamp text": ({**params, "timestamp": "abc"}, good_body, "text/xml"),
        "timestamp huge": ({**params, "timestamp": "9" * 40}, good_body, "text/xml"),
        "empty body": (params, b"", "text/xml"),
        "not xml": (params, b"hello", "text/xml"),
        "json": (params, b'{"a": 1}', "application/json"),
        "binary": (params, bytes(range(256)), "application/octet-stream"),
        "bad utf8": (params, b"<xml>\xff\xfe</xml>", "text/xml"),
        "other root": (params, f"<foo><Encrypt>{enc}</Encrypt></foo>", "text/xml"),
        "doctype": (
            params,
            '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml><Encrypt>&a;</Encrypt></xml>',
            "text/xml",
        ),
        "deep": (params, "<xml>" + "<a>" * 200 + "</a>" * 200 + "</xml>", "text/xml"),
        "encrypt empty": (params, f"<xml><ToUserName>{corp}</ToUserName><Encrypt></Encrypt></xml>", "text/xml"),
        "encrypt nested": (
            params,
            f"<xml><ToUserName>{corp}</ToUserName><Encrypt><a>x</a></Encrypt></xml>",
            "text/xml",
        ),
        "encrypt repeated": (
            params,
            f"<xml><ToUserName>{corp}</ToUserName><Encrypt>{enc}</Encrypt><Encrypt>{enc}</Encrypt></xml>",
            "text/xml",
        ),
        "encrypt junk": (
            params,
            f"<xml><ToUserName>{corp}</ToUserName><Encrypt>!!!notbase64</Encrypt></xml>",
            "text/xml",
        ),
        "encrypt short": (params, f"<xml><ToUserName>{corp}</ToUserName><Encrypt>QUJD</Encrypt></xml>", "text/xml"),
        "unknown corp": (params, good_body.replace(corp, "wwUnknownCorp"), "text/xml"),
        "corp repeated": (
            params,
            good_body.replace("</ToUserName>", f"</ToUserName><ToUserName>{corp}</ToUserName>", 1),
            "text/xml",
        ),
        "agent dict": (params, good_body.replace("<AgentID>", "<AgentID><a>1</a>", 1), "text/xml"),
        "huge": (params, "<xml>" + "x" * (3 * 1024 * 1024) + "</xml>", "text/xml"),
    }
    problems = {}
    for label, (query, body, ctype) in cases.items():
        resp = client.post(URL, query_string=query, data=body, content_type=ctype)
        if resp.status_code < 400 or (problem := _problem(resp)):
            problems[label] = (resp.status_code, _problem(resp) or resp.get_data(as_text=True)[:100])
    get_cases = {
        "get no params": {},
        "get junk echostr": {**params, "echostr": "!!!"},
        "get huge timestamp": {**params, "timestamp": "9" * 40, "echostr": enc},
        "get bad sig": {**params, "msg_signature": "x", "echostr": enc},
    }
    for label, query in get_cases.items():
        resp = client.get(URL, query_string=query)
        if resp.status_code < 400 or (problem := _problem(resp)):
            problems[label] = (resp.status_code, _problem(resp) or resp.get_data(as_text=True)[:100])
    for method in ("PUT", "DELETE", "PATCH"):
        resp = client.open(URL, method=method)
        if problem := _problem(resp):
            problems[method] = (resp.status_code, problem)
    assert problems == {}


@pytest.mark.parametrize("label", sorted(ODD_EVENTS))
def test_signed_odd_events_are_answered_and_settle(
    app: Any, client: Any, db_session: Any, world: dict[str, Any], label: str
) -> None:
    """A correctly signed event of an odd shape: `success` or a 4xx in format; once accepted its
    jobs run without escaping the runner and it ends processed, ignored or dead; the dead-letter
    detail and replay of it answer without a 500."""
    from backend.wecom.models import WeComRawEvent

    sb = world["sandbox"]
    resp = post_event(client, sb, _xml(world["corp"], ODD_EVENTS[label]))
    assert resp.status_code < 500 and not _problem(resp), (resp.status_code, resp.get_data(as_text=True)[:300])
    if resp.status_code != 200:
        return
    run_due_jobs(app)
    db_session.expire_all()
    raw = db_session.scalars(select(WeComRawEvent).order_by(WeComRawEvent.id.desc()).limit(1)).one()
    assert raw.status.value in ("processed", "ignored", "dead"), (raw.status, raw.last_error)
    raw_id = raw.id
    detail = client.get(f"{EVENTS}/{raw_id}", headers=world["admin_h"])
    assert detail.status_code == 200, detail.get_json()
    listed = client.get(EVENTS, headers=world["admin_h"], query_string={"status": raw.status.value})
    assert listed.status_code == 200 and raw_id in [e["id"] for e in listed.get_json()["items"]]
    replay = client.post(f"{EVENTS}/{raw_id}/replay", headers=world["admin_h"], json={"reason": "probe"})
    assert replay.status_code < 500 and not _problem(replay), replay.get_json()
    run_due_jobs(app)
