"""WeCom callbacks that are correctly signed and encrypted but whose plaintext has an unexpected
shape: the endpoint answers them as bad requests (4xx), never as a server error."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.wecom.helpers import post_event


@pytest.mark.parametrize(
    "create_time",
    [
        "<CreateTime><Value>1700000000</Value></CreateTime>",  # an element with children: a dict
        "<CreateTime>1700000000</CreateTime><CreateTime>1700000001</CreateTime>",  # repeated: a list
    ],
)
def test_a_malformed_create_time_is_a_bad_request(client: Any, sandbox_reset: Any, create_time: str) -> None:
    """CreateTime orders the events of a relation, so it must be one integer: a nested or repeated
    element is refused as a bad request instead of failing the parser with a 500."""
    sb = sandbox_reset
    corp = sb.credentials["WECOM_CORP_ID"]
    xml = (
        f"<xml><ToUserName><![CDATA[{corp}]]></ToUserName><FromUserName>sys</FromUserName>{create_time}"
        "<MsgType>event</MsgType><Event>change_external_contact</Event>"
        "<ChangeType>edit_external_contact</ChangeType><UserID>u1</UserID>"
        "<ExternalUserID>wmX</ExternalUserID></xml>"
    )
    resp = post_event(client, sb, xml, timestamp=str(int(time.time())))
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.get_json())
