"""An all-digit CreateTime longer than a Unix time is a malformed callback (400), not a server error."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.wecom.models import WeComRawEvent
from tests.wecom.helpers import post_event


@pytest.mark.parametrize("value", ["9" * 5000, "9" * 13])
def test_an_overlong_create_time_is_a_malformed_callback(
    client: Any, db_session: Any, sandbox_reset: Any, value: str
) -> None:
    sb = sandbox_reset
    corp = sb.credentials["WECOM_CORP_ID"]
    xml = (
        f"<xml><ToUserName><![CDATA[{corp}]]></ToUserName><FromUserName>sys</FromUserName>"
        f"<CreateTime>{value}</CreateTime>"
        "<MsgType>event</MsgType><Event>change_external_contact</Event>"
        "<ChangeType>edit_external_contact</ChangeType><UserID>u1</UserID>"
        "<ExternalUserID>wmX</ExternalUserID></xml>"
    )
    resp = post_event(client, sb, xml, timestamp=str(int(time.time())))
    assert (resp.status_code, resp.get_json()["code"]) == (400, "wecom.callback_malformed")
    assert db_session.scalar(select(func.count()).select_from(WeComRawEvent)) == 0
