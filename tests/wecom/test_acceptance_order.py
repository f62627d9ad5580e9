"""Issue 3 acceptance, "shuffled → the end state is identical to each event applied once in
order", for a relation's channel: a customer who adds an advisor through a channel's QR code
and deletes them a second later. Delivered in order, or the deletion first (WeCom does not
promise order), the relation ends the same: lost, with the channel (state, channel id), the
add time and the add way of the add that opened it."""

from __future__ import annotations

import time
from typing import Any

from tests.wecom.helpers import add_store_channel, callback_world, contact_xml, friend_of, ok, post_event

A = "advisor.zhang"


def _relation(session: Any, ext: str) -> tuple[Any, ...]:
    f = friend_of(session, A, ext)
    return (f.status.value, f.version, f.state, f.channel_id, f.added_at, f.add_way)


def test_a_loss_processed_before_its_add_keeps_the_channel_of_the_add(
    client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any
) -> None:
    sb = sandbox_reset
    callback_world(sb, tree, make_staff)
    channel = add_store_channel(db_session, sb, tree.stores[0].id, "store0-order", [A])
    t = int(time.time()) - 60
    for ext in ("wmOrderIn", "wmOrderOut"):
        sb.state.add_external_contact(ext, "客户", unionid=f"o{ext}")
        sb.state.add_follow(A, ext, state="store0-order", add_way=1)
    add = {
        e: contact_xml(sb, "add_external_contact", A, e, t, State="store0-order") for e in ("wmOrderIn", "wmOrderOut")
    }
    lost = {e: contact_xml(sb, "del_follow_user", A, e, t + 1) for e in ("wmOrderIn", "wmOrderOut")}

    ok(post_event(client, sb, add["wmOrderIn"]))
    ok(post_event(client, sb, lost["wmOrderIn"]))
    ok(post_event(client, sb, lost["wmOrderOut"]))  # the deletion first
    ok(post_event(client, sb, add["wmOrderOut"]))

    in_order = _relation(db_session, "wmOrderIn")
    assert in_order[:4] == ("deleted_by_customer", t + 1, "store0-order", channel.id)
    assert _relation(db_session, "wmOrderOut") == in_order
