"""Channel QR codes: input that looks valid but that WeCom would store or apply wrongly is refused
when the channel is created, before any contact way is made in WeCom."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.wecom.models import WeComChannel
from tests.wecom.helpers import ZHANG, channel_world, post_channel


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    return channel_world(sandbox_reset, tree, make_staff, staff_headers)


def create(client: Any, world: Any, **overrides: Any) -> Any:
    return post_channel(client, world["h"], world["tree"].stores[0].id, [ZHANG], **overrides)


def test_a_state_with_a_trailing_newline_is_refused(client: Any, db_session: Any, world: Any) -> None:
    """`state` is 1..30 of [A-Za-z0-9_.:-], with nothing after it: WeCom echoes the state in the add
    event, whose text the parser strips, so a state ending in a newline would never match its
    channel and every friend of that QR code would be attributed to no channel. It is a 422 and
    no channel is stored."""
    resp = create(client, world, state="store0-qr\n")
    assert resp.status_code == 422, (resp.status_code, resp.get_json())
    assert db_session.scalars(select(WeComChannel)).all() == []


@pytest.mark.parametrize(
    "auto_tag_ids",
    [
        ["etNoSuchTag"],  # not in the corp's tag library
        [""],  # blank
        ["etNoSuchTag", ""],
    ],
)
def test_unknown_auto_tag_ids_are_refused(client: Any, db_session: Any, world: Any, auto_tag_ids: list[str]) -> None:
    """A channel's auto tags are checked against the corp's tag library, as marking tags by hand
    is (wecom.tag_unknown): an unknown or blank tag id would silently never apply, so the channel
    is refused before its contact way is created in WeCom."""
    resp = create(client, world, auto_tag_ids=auto_tag_ids)
    assert resp.status_code == 422, (resp.status_code, resp.get_json())
    assert world["sb"].hits("/cgi-bin/externalcontact/add_contact_way", "wecom") == 0
    assert db_session.scalars(select(WeComChannel)).all() == []
