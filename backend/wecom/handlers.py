"""Event handlers: what each stored callback event does to dealerloop's state.

`process_raw_event` is the job body. It applies one event inside a SAVEPOINT: either all of the
event's effects are written (relation, tags, touchpoints, alert, messages to send) or none.
A failed try is recorded on the event and the next one scheduled with backoff; after the last
try the event is dead-lettered for an admin. Handlers are replay-safe: touchpoints and alerts
are keyed by the event, and a late (older) event cannot overwrite a newer relation state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from backend.platform.db import utcnow
from backend.platform.jobs import enqueue
from backend.platform.ports import UpstreamError
from backend.touchpoints.models import Kind
from backend.wecom import handover, welcome
from backend.wecom import service as svc
from backend.wecom.events import PROCESS_JOB, REBALANCE_JOB, WELCOME_CHANGE_TYPES, parse_event
from backend.wecom.models import AlertKind, FriendStatus, RawEventStatus, WeComFriend, WeComRawEvent

log = logging.getLogger("dealerloop.wecom")

RETRY_DELAYS = (5, 30, 120, 600)  # seconds before try 2, 3, 4, 5...
FINAL = (RawEventStatus.PROCESSED, RawEventStatus.IGNORED, RawEventStatus.DEAD, RawEventStatus.PRUNED)


def max_attempts() -> int:
    return int(current_app.config.get("WECOM_EVENT_MAX_ATTEMPTS") or current_app.config["JOB_MAX_ATTEMPTS"])


def process_raw_event(session: Session, raw_event_id: int) -> str:
    raw = session.scalars(select(WeComRawEvent).where(WeComRawEvent.id == raw_event_id).with_for_update()).one_or_none()
    if raw is None or raw.status in FINAL:
        return "skipped"
    fields = parse_event(raw.xml)
    try:
        with session.begin_nested():
            handled = apply_event(session, raw, fields)
    except (OperationalError, InterfaceError):
        raise  # the transaction itself is gone (deadlock, lost connection): the outbox retries
    except Exception as exc:  # noqa: BLE001 - any failure of the event is recorded, never lost
        raw.attempts += 1
        raw.last_error = f"{type(exc).__name__}: {exc}"[:4000]
        if raw.attempts >= max_attempts():
            raw.status = RawEventStatus.DEAD
            log.warning("wecom event %s dead-lettered after %s tries: %s", raw.id, raw.attempts, raw.last_error)
            return "dead"
        raw.status = RawEventStatus.RETRYING
        delay = RETRY_DELAYS[min(raw.attempts - 1, len(RETRY_DELAYS) - 1)]
        enqueue(
            session,
            PROCESS_JOB,
            {"raw_event_id": raw.id},
            dedup_key=f"{PROCESS_JOB}:{raw.id}:{raw.replays}:{raw.attempts}",
            delay=timedelta(seconds=delay),
        )
        log.info("wecom event %s failed (try %s), retry in %ss: %s", raw.id, raw.attempts, delay, raw.last_error)
        return "retrying"
    raw.attempts += 1
    raw.status = RawEventStatus.PROCESSED if handled else RawEventStatus.IGNORED
    raw.processed_at = utcnow()
    raw.last_error = None
    if handled and raw.change_type in WELCOME_CHANGE_TYPES:
        welcome.settle(session, raw)  # a welcome sent before this processing (row lock held)
    return raw.status.value


def dead_letter(session: Session, error: str, raw_event_id: int) -> None:
    """The processing job gave up on errors the event's own tries do not count (the database
    failing under it: deadlocks, lost connections, an outage longer than the job's retries).
    The event joins the dead letters, where an admin sees and replays it, instead of staying
    `received` with no job left to run it."""
    raw = session.scalars(select(WeComRawEvent).where(WeComRawEvent.id == raw_event_id).with_for_update()).one_or_none()
    if raw is None or raw.status in FINAL:
        return
    raw.status = RawEventStatus.DEAD
    raw.last_error = f"processing job gave up: {error}"[:4000]
    log.warning("wecom event %s dead-lettered, its job gave up: %s", raw.id, error)


def replay(session: Session, raw: WeComRawEvent) -> None:
    """An admin sends a dead (or ignored) event through processing again, with fresh tries."""
    raw.replays += 1
    raw.attempts = 0
    raw.status = RawEventStatus.RECEIVED
    enqueue(session, PROCESS_JOB, {"raw_event_id": raw.id}, dedup_key=f"{PROCESS_JOB}:{raw.id}:{raw.replays}:0")


def apply_event(session: Session, raw: WeComRawEvent, fields: dict[str, Any]) -> bool:
    """Apply one event. False: an event type dealerloop does not act on (kept as ignored)."""
    if fields.get("Event") == "change_external_contact":
        handler = CONTACT_HANDLERS.get(str(fields.get("ChangeType", "")))
        if handler is None:
            return False
        handler(Event(session, raw, fields))
        return True
    if fields.get("Event") == "change_external_tag":
        on_tag_change(session, raw, fields)
        return True
    if fields.get("Event") == "change_external_chat":
        return on_chat(session, raw, fields)
    return False


class Event:
    """One change_external_contact event with what every handler needs."""

    def __init__(self, session: Session, raw: WeComRawEvent, fields: dict[str, Any]) -> None:
        self.session = session
        self.raw = raw
        self.fields = fields
        self.corp_id = raw.corp_id
        self.userid = str(fields.get("UserID") or "")
        self.external_userid = str(fields.get("ExternalUserID") or "")
        self.version = raw.create_time
        self.occurred_at: datetime = svc.event_time(raw.create_time)
        self.ref = f"ev{raw.id}"
        self.staff = svc.staff_by_userid(session, self.corp_id, self.userid)
        self.friend_is_new = False  # set by friend(): whether the relation was created by this event
        if not self.userid or not self.external_userid:
            raise ValueError("event without UserID or ExternalUserID")

    def gateway(self) -> Any:
        return svc.gateway_for(self.corp_id, self.raw.agent_id)

    def friend(self, detail: dict[str, Any] | None, initial: FriendStatus) -> Any:
        customer = svc.ensure_customer(self.session, self.external_userid, detail)
        friend, self.friend_is_new = svc.lock_friend(
            self.session, self.corp_id, self.userid, self.external_userid, customer, self.staff, initial
        )
        return customer, friend

    def is_newest(self, friend: Any, status: FriendStatus) -> bool:
        """Only the newest event moves the relation's status (late deliveries leave history).
        CreateTime counts whole seconds: of two events in the same second, the one whose status
        ranks higher wins, whichever is processed last (a removal over an add, an add over a
        half add)."""
        if self.version != friend.version:
            return self.version > friend.version
        return _TIE_RANK[status] >= _TIE_RANK[friend.status]


_TIE_RANK = {
    status: rank
    for rank, status in enumerate(
        [
            FriendStatus.HALF,
            FriendStatus.ACTIVE,
            FriendStatus.CLOSED,
            FriendStatus.TRANSFERRED,
            FriendStatus.DELETED_BY_ADVISOR,
            FriendStatus.DELETED_BY_CUSTOMER,
        ]
    )
}


def on_add(ev: Event) -> None:
    half = ev.fields.get("ChangeType") == "add_half_external_contact"
    status = FriendStatus.HALF if half else FriendStatus.ACTIVE
    detail = svc.fetch_contact(ev.gateway(), ev.external_userid)
    customer, friend = ev.friend(detail, status)
    follow = svc.follow_of(detail, ev.userid)
    state = ev.fields.get("State") or (follow or {}).get("state")
    channel = svc.channel_by_state(ev.session, ev.corp_id, state)
    lost_before_added = False
    if ev.is_newest(friend, status):
        friend.status = status
        friend.version = ev.version
        friend.added_at = ev.occurred_at
        friend.lost_at = None
        friend.state = state
        friend.channel_id = channel.id if channel else friend.channel_id
        if follow and follow.get("add_way") is not None:
            friend.add_way = int(follow["add_way"])
        svc.resolve_alerts(ev.session, friend, ev.occurred_at)
    elif friend.added_at is None:
        # A later change of the relation (a loss) was applied first: its status stands, but the
        # relation still came through this add, as when the events arrive in order.
        lost_before_added = True
        friend.added_at = ev.occurred_at
        friend.state = state
        friend.channel_id = channel.id if channel else friend.channel_id
        if follow and follow.get("add_way") is not None:
            friend.add_way = int(follow["add_way"])
    if state and _acquired_by(ev, customer, friend):
        customer.acquisition_channel = f"wecom:{state}"[:64]
    if ev.staff is not None:
        svc.assign_advisor(ev.session, customer, ev.staff)
        # This add may be the takeover of a transfer processed before it (or the late add of a
        # relation transferred away since, whose takeover's add came first): the transfers of
        # the customer's relations are followed again, each once (follow_transfer).
        for handed_over_by in svc.transferred_advisors(ev.session, ev.corp_id, customer.id):
            svc.follow_transfer(ev.session, ev.corp_id, customer.id, handed_over_by)
    svc.apply_follow(ev.session, friend, follow, ev.ref, ev.occurred_at)
    others = svc.record_channel_add(ev.session, friend, channel.id if channel else None, ev.ref, ev.occurred_at)
    # The nightly reconciliation recovered this very add (its event came late) and wrote its
    # touchpoint: the add is on the customer's timeline once.
    if not any(svc.is_reconciled(other) for other in others or ()):
        svc.touch(
            ev.session,
            friend,
            Kind.FRIEND_HALF_ADDED if half else Kind.FRIEND_ADDED,
            ev.ref,
            ev.occurred_at,
            {"state": state, "channel_id": channel.id if channel else None},
        )
    if channel is not None and channel.daily_cap is not None:
        # The cap is checked after commit, in its own job: this add counts, the contact way's
        # user list follows (update_contact_way is an API call, not part of this event's unit).
        enqueue(ev.session, REBALANCE_JOB, {"channel_id": channel.id})
    if channel is not None and channel.auto_tag_ids and ev.is_newest(friend, status):
        auto_tag(ev, friend, channel.auto_tag_ids)
    elif channel is not None and channel.auto_tag_ids and lost_before_added:
        # In order the add would have tagged the relation before its loss, and a re-add keeps
        # WeCom's tags: tried all the same (a relation WeCom no longer has refuses, 84061, and
        # then only costs the tags, as for any add).
        auto_tag(ev, friend, channel.auto_tag_ids)


def _acquired_by(ev: Event, customer: Any, friend: Any) -> bool:
    """Whether this add is the one the customer was acquired through: none set yet (or only
    "wecom"), or a WeCom channel set by an add of another advisor that happened later than this
    one (processed first). Another source (the mini-program, the store) is never replaced."""
    current = customer.acquisition_channel
    if current in (None, "wecom"):
        return True
    if not current.startswith("wecom:"):
        return False
    others_first = ev.session.scalar(
        select(func.min(WeComFriend.added_at)).where(
            WeComFriend.customer_id == customer.id, WeComFriend.id != friend.id
        )
    )
    return others_first is not None and others_first > ev.occurred_at


def auto_tag(ev: Event, friend: Any, tag_ids: list[str]) -> None:
    """The channel's tags on the new friend. API actions produce no callback: mark in WeCom and
    record the change ourselves. Tags deleted from the library since the channel was set up are
    skipped, and a refusal (84061: the customer left meanwhile; 40068: a tag WeCom no longer
    knows) only costs the tags: the add itself is applied. What may pass (a timeout, a 5xx,
    WeCom busy or rate limiting: 45009, -1) is retried with the event, which is safe (the tags
    are read again and the add's writes are rolled back with the failed try); the event's last
    try gives the tags up rather than the add."""
    have = svc.friend_tag_ids(ev.session, friend.id)
    deleted = svc.deleted_tag_ids(ev.session, ev.corp_id, tag_ids)
    missing = [t for t in tag_ids if t not in have and t not in deleted]
    if not missing:
        return
    try:
        ev.gateway().post(
            "externalcontact/mark_tag",
            {"userid": ev.userid, "external_userid": ev.external_userid, "add_tag": missing},
        )
    except UpstreamError as exc:
        if exc.transient and ev.raw.attempts + 1 < max_attempts():
            raise  # tried again with the event; its last try applies the add without the tags
        log.warning(
            "wecom event %s: auto tags %s refused (errcode %s), add applied without them",
            ev.raw.id,
            missing,
            exc.errcode,
        )
        return
    svc.set_friend_tags(ev.session, friend, have | set(missing), f"{ev.ref}:auto", ev.occurred_at)


def on_edit(ev: Event) -> None:
    detail = svc.fetch_contact(ev.gateway(), ev.external_userid)
    follow = svc.follow_of(detail, ev.userid)
    if follow is None:
        # Not (or no longer) this advisor's contact (84061, or not in follow_user): the edit may
        # touch a relation we have, never make one.
        friend = svc.find_friend(ev.session, ev.corp_id, ev.userid, ev.external_userid)
        if friend is None:
            return
    else:
        customer, friend = ev.friend(detail, FriendStatus.ACTIVE)
        if ev.friend_is_new:
            _as_added(ev, customer, friend, follow)
    svc.apply_follow(ev.session, friend, follow, ev.ref, ev.occurred_at)
    svc.touch(ev.session, friend, Kind.FRIEND_EDITED, ev.ref, ev.occurred_at)


def _as_added(ev: Event, customer: Any, friend: Any, follow: dict[str, Any]) -> None:
    """An edit of a relation whose add we never had (it comes late, or never; the relation is
    made active, at version 0): its channel and the advisor, so the advisor can open the
    customer. The add's time, touchpoint and channel count are left to the add's own event or
    to the nightly reconciliation: WeCom's `createtime` read now may be of a later re-add, and
    taken as this relation's add time it would clear the alert of a loss still to be applied."""
    friend.state = follow.get("state") or friend.state
    channel = svc.channel_by_state(ev.session, ev.corp_id, friend.state)
    friend.channel_id = channel.id if channel else friend.channel_id
    if ev.staff is not None:
        svc.assign_advisor(ev.session, customer, ev.staff)


def _on_removed(ev: Event, status: FriendStatus, kind: Kind, alert: AlertKind | None) -> Any:
    # The contact may be gone from WeCom already: no fetch, the event says enough.
    _, friend = ev.friend(None, status)
    # A transfer our own handover recorded already (its result came first): one touchpoint.
    recorded = status == FriendStatus.TRANSFERRED and not ev.friend_is_new and friend.status == FriendStatus.TRANSFERRED
    if ev.is_newest(friend, status):
        friend.status = status
        friend.version = ev.version
        friend.lost_at = ev.occurred_at if alert else None
    if not recorded:
        svc.touch(ev.session, friend, kind, ev.ref, ev.occurred_at)
    if alert is None:
        return friend
    # One alert per loss of the customer, for what happened first: an advisor removing a
    # customer who had already deleted them (a one-way contact) is not alerted again.
    others = svc.record_channel_loss(ev.session, friend, ev.ref, ev.occurred_at)
    if others == []:
        svc.raise_alert(ev.session, ev.raw, friend, alert, ev.occurred_at)
    elif others:
        first = min(other.occurred_at for other in others)
        if ev.occurred_at < first:
            svc.move_alert(ev.session, ev.raw, friend, alert, ev.occurred_at, first)
    return friend


def on_del_external_contact(ev: Event) -> None:
    if ev.fields.get("Source") == "DELETE_BY_TRANSFER":  # a handover, not a loss
        friend = _on_removed(ev, FriendStatus.TRANSFERRED, Kind.FRIEND_TRANSFERRED, None)
        if friend.staff_id is not None:
            svc.follow_transfer(ev.session, ev.corp_id, friend.customer_id, friend.staff_id)
    else:
        _on_removed(ev, FriendStatus.DELETED_BY_ADVISOR, Kind.FRIEND_DELETED_BY_ADVISOR, AlertKind.DELETED_BY_ADVISOR)


def on_del_follow_user(ev: Event) -> None:
    _on_removed(ev, FriendStatus.DELETED_BY_CUSTOMER, Kind.FRIEND_DELETED_BY_CUSTOMER, AlertKind.DELETED_BY_CUSTOMER)


def on_transfer_fail(ev: Event) -> None:
    """WeCom could not hand the customer to the takeover advisor (the event's UserID), who did
    not become their friend: no relation of theirs is opened or changed. The touchpoint and the
    managers' alert go on the takeover's relation with the customer: their own when there is
    one (a takeover over their limit may know the customer already), else a closed record of
    it. Not on "the customer's open relation": which one is open depends on which other events
    were processed first (WeCom does not promise order), and a burst must end as in order. A
    failure of one of our handovers is that handover's (handover.fail_told_by_callback): one
    touchpoint and one alert, not two."""
    reason = str(ev.fields.get("FailReason") or "")
    if handover.fail_told_by_callback(ev.session, ev.corp_id, ev.userid, ev.external_userid, reason, ev.occurred_at):
        return
    _, friend = ev.friend(None, FriendStatus.CLOSED)
    svc.touch(ev.session, friend, Kind.TRANSFER_FAILED, ev.ref, ev.occurred_at, {"reason": reason})
    svc.raise_alert(ev.session, ev.raw, friend, AlertKind.TRANSFER_FAILED, ev.occurred_at, {"reason": reason})


def on_tag_change(session: Session, raw: WeComRawEvent, fields: dict[str, Any]) -> None:
    """change_external_tag: the library the tag is in is read again from WeCom (the same sync
    as nightly, standing down when a read since the event saw it), so a create, update, delete
    or shuffle ends as WeCom is now, however late, repeated or reordered the events came. A
    rule-group tag's event carries its rule group in `StrategyId` (a corporate tag's carries
    none, or 0 — how WeCom fills it for those is not on a page we found); it is applied to
    the rule-group library, and to the tags of it WeCom does not list to this app
    (`apply_strategy_tag_event`)."""
    gateway = svc.gateway_for(raw.corp_id, raw.agent_id)
    strategy_id = _positive_int(_text(fields, "StrategyId"))
    if strategy_id is None:
        svc.sync_tag_library(session, raw.corp_id, gateway, raw.received_at)
        return
    svc.sync_tag_library(session, raw.corp_id, gateway, raw.received_at, svc.STRATEGY_TAGS)
    svc.apply_strategy_tag_event(
        session,
        gateway,
        strategy_id,
        _text(fields, "Id"),
        _text(fields, "TagType"),
        _text(fields, "ChangeType"),
        svc.event_time(raw.create_time),
    )


def _positive_int(text: str) -> int | None:
    """A rule group id: digits only (not "abc", not "0", not 2**70)."""
    if not text.isdigit() or len(text) > 18:
        return None
    return int(text) or None


def on_chat(session: Session, raw: WeComRawEvent, fields: dict[str, Any]) -> bool:
    """change_external_chat: the chat's name/owner/notice from groupchat/get (WeCom's current
    state, applied by the newest event), membership from the event's own member list (each
    member keeps the CreateTime of its last change: a late event only leaves its touchpoint).

    Known limits (touchpoints are never retracted): a `create` processed after the chat was
    dismissed cannot learn the initial members (groupchat/get answers 40050); a member who
    joined and then left before a dismissal, whose events are processed after the dismissal's,
    gets one group_left more than in order; a member of the chat at its creation who left
    before the `create` was processed gets their group_left but no group_joined (the roster no
    longer lists them, and a member row alone cannot tell them from one who joined later)."""
    chat_id, change = _text(fields, "ChatId"), _text(fields, "ChangeType")
    if not chat_id or change not in ("create", "update", "dismiss"):
        return False  # also a repeated or nested ChatId: no chat is named after a list
    version = raw.create_time
    at = svc.event_time(raw.create_time)
    ref = f"ev{raw.id}"
    chat = svc.lock_chat(session, raw.corp_id, chat_id)
    if change == "dismiss":
        svc.dismiss_chat(session, chat, version, at)
        return True
    snapshot = svc.fetch_group_chat(svc.gateway_for(raw.corp_id, raw.agent_id), chat_id)
    svc.apply_chat_snapshot(session, chat, snapshot, version)
    roster = {m["userid"]: m for m in (snapshot or {}).get("member_list") or [] if m.get("userid")}
    if change == "create":
        # The members at creation: those in the chat now who joined no later than the event.
        for userid, info in sorted(roster.items()):
            if int(info.get("join_time") or 0) <= version:
                svc.member_joined(session, chat, userid, info, version, ref, at, info.get("join_scene"))
        return True
    detail = _text(fields, "UpdateDetail")
    if detail in ("add_member", "del_member"):
        members = _mem_change_list(fields)
        if not members:
            raise ValueError(f"{detail} without MemChangeList")
        for userid in members:
            if detail == "add_member":
                svc.member_joined(
                    session, chat, userid, roster.get(userid), version, ref, at, _int(fields, "JoinScene")
                )
            else:
                # The roster fetched now settles a leave and a join in the same second.
                listed = None if snapshot is None else userid in roster
                svc.member_left(session, chat, userid, version, ref, at, _int(fields, "QuitScene"), listed)
    return True


def _text(fields: dict[str, Any], name: str) -> str:
    """A field that must be one text: a repeated or nested element is not one."""
    value = fields.get(name)
    return value if isinstance(value, str) else ""


def _mem_change_list(fields: dict[str, Any]) -> list[str]:
    """The userids of MemChangeList's Items: each Item a text (a nested element is no member)."""
    block = fields.get("MemChangeList")
    items = block.get("Item") if isinstance(block, dict) else None
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, list):
        return []
    return [i for i in items if isinstance(i, str) and i]


def _int(fields: dict[str, Any], name: str) -> int | None:
    try:
        return int(fields[name])
    except (KeyError, TypeError, ValueError):
        return None


CONTACT_HANDLERS: dict[str, Callable[[Event], None]] = {
    "add_external_contact": on_add,
    "add_half_external_contact": on_add,
    "edit_external_contact": on_edit,
    "del_external_contact": on_del_external_contact,
    "del_follow_user": on_del_follow_user,
    "transfer_fail": on_transfer_fail,
}
