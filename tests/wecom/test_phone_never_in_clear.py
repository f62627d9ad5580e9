"""a phone number typed in a WeCom remark, description and remark_mobiles
must not be written in clear anywhere (logs, touchpoints, jobs, messages, other tables)."""

from __future__ import annotations

import io
import logging
import time
from typing import Any

from backend.models import metadata
from backend.platform.logs import ContextFilter, TextFormatter
from tests.wecom.helpers import contact_xml, post_event

ZHANG = "advisor.zhang"
EXT = "wmPhoneNotes01"
PHONE = "13812345678"


def test_phone_in_wecom_notes_is_never_in_clear(
    client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any, caplog: Any
) -> None:
    sb = sandbox_reset
    make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    make_staff(tree.stores[0], "store_manager", userid="advisor.li", name="李店长")
    admin = make_staff(tree.group, "group_admin", userid="admin")
    sb.state.add_external_contact(EXT, "王先生", follow_userid=ZHANG, remark=f"王总 {PHONE}")
    with sb.state.lock:
        sb.state.follows[(ZHANG, EXT)]["remark_mobiles"] = [PHONE, "+86 138-1234-5678"]
        sb.state.follows[(ZHANG, EXT)]["description"] = f"手机 {PHONE} 车牌 沪A12345"
    db_session.commit()

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    try:
        t = int(time.time())
        for i, change in enumerate(["add_external_contact", "edit_external_contact", "del_follow_user"]):
            resp = post_event(client, sb, contact_xml(sb, change, ZHANG, EXT, t + i))
            assert resp.status_code == 200, resp.get_data(as_text=True)
        # A failing edit (WeCom answering an error) goes through retries and the dead letter.
        sb.state.set_fault("errcode", errcode=40001, path="/cgi-bin/externalcontact/get", service="wecom")
        post_event(client, sb, contact_xml(sb, "edit_external_contact", ZHANG, EXT, t + 10))
        events = client.get("/api/workbench/v1/wecom/events", headers=staff_headers(admin))
        assert events.status_code == 200
    finally:
        root.removeHandler(handler)

    found: dict[str, Any] = {}
    raw_log = "\n".join(
        r.getMessage() + ("\n" + logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
        for r in caplog.records
    )
    if PHONE in raw_log or "138-1234-5678" in raw_log:
        found["log records (unfiltered)"] = [line for line in raw_log.splitlines() if "1234" in line][:5]
    if PHONE in stream.getvalue():
        found["log output (production formatter)"] = [line for line in stream.getvalue().splitlines() if PHONE in line][
            :5
        ]
    if PHONE in events.get_data(as_text=True):
        found["events API"] = True
    db_session.expire_all()
    for table in metadata.sorted_tables:
        for row in db_session.execute(table.select()).mappings():
            for column, value in row.items():
                raw = value if isinstance(value, bytes) else str(value).encode()
                if PHONE.encode() in raw or b"138-1234-5678" in raw:
                    found.setdefault(f"{table.name}.{column}", str(value)[:200])
    assert found == {}, found
