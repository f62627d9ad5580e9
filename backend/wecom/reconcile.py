"""Nightly reconciliation of friend relations against WeCom (`externalcontact/batch/get_by_user`).

Callbacks get lost (WeCom retries three times, then gives up) and API actions produce none, so
once a night each active advisor's relations are compared with what WeCom has: relations WeCom
has and we lack (or have as lost) are created / reopened, ours that WeCom lacks are closed.
Each change is a touchpoint whose payload says `"reconciled": true`.

One job per advisor: a failing or unknown advisor (60111) does not hold up the others, and the
comparison runs on a complete picture (all pages fetched before anything is changed). The time
the fetch started is the version of what it saw: an event applied meanwhile (newer) wins. A
relation it closes gets the version just after the last event applied to it, so that the
loss's own event, if it comes late, still sets how the relation ended. The relations it creates
and closes are counted in their channel's statistics, once (see `service.recount_facts`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.org.models import Staff, StaffStatus
from backend.platform.db import utcnow
from backend.platform.jobs import enqueue
from backend.platform.ports import UpstreamError
from backend.touchpoints.models import Channel, Kind
from backend.touchpoints.service import record
from backend.wecom import service as svc
from backend.wecom.models import FriendStatus, WeComFriend

log = logging.getLogger("dealerloop.wecom.reconcile")

SOURCE = "wecom_reconcile"
ALL_JOB = "wecom.reconcile.all"
ADVISOR_JOB = "wecom.reconcile.advisor"
PAGE_LIMIT = 100
OPEN = (FriendStatus.ACTIVE, FriendStatus.HALF)
UNKNOWN_USER = 60111
# WeCom answering "no customers" for an advisor we know with this many open relations is far
# likelier a lost permission (客户联系 taken away) than every customer leaving in one night:
# nothing is closed then, and the relations are counted as held.
EMPTY_ANSWER_GUARD = 5
MAX_PAGES = 2000  # 200,000 contacts: far above WeCom's per-advisor limit (the cursor loops past it)


def reconcile_all(session: Session, corp_id: str, run: str) -> int:
    """Enqueue one reconciliation per active advisor of the corp (once per run key)."""
    userids = session.scalars(
        select(Staff.wecom_userid)
        .where(Staff.corp_id == corp_id, Staff.status == StaffStatus.ACTIVE)
        .order_by(Staff.wecom_userid)
    ).all()
    queued = 0
    for userid in userids:
        if enqueue(
            session,
            ADVISOR_JOB,
            {"corp_id": corp_id, "userid": userid},
            dedup_key=f"{ADVISOR_JOB}:{run}:{corp_id}:{userid}",
        ):
            queued += 1
    return queued


def fetch_relations(gateway: Any, userid: str) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """external_userid -> (external_contact, follow_info) of this advisor, every page."""
    found: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    cursor = ""
    seen: set[str] = set()
    while True:
        page = gateway.post(
            "externalcontact/batch/get_by_user", {"userid_list": [userid], "cursor": cursor, "limit": PAGE_LIMIT}
        )
        for row in page.get("external_contact_list") or []:
            contact, follow = row.get("external_contact") or {}, row.get("follow_info") or {}
            if follow.get("userid", userid) == userid and contact.get("external_userid"):
                found[contact["external_userid"]] = (contact, follow)
        seen.add(cursor)
        cursor = page.get("next_cursor") or ""
        if not cursor:
            return found
        if cursor in seen or len(seen) >= MAX_PAGES:
            # A list that does not end is not the whole list: closing what it lacks would close
            # relations it never reached. Nothing is changed; the job fails and is retried.
            raise UpstreamError("unavailable", errmsg=f"next_cursor of {userid} does not end", service="wecom")


def _follow_for_apply(follow: dict[str, Any]) -> dict[str, Any]:
    """batch/get_by_user's follow_info in externalcontact/get's follow_user shape."""
    return {**follow, "tags": [{"tag_id": t, "type": 1} for t in follow.get("tag_id") or []]}


def _added_since(createtime: int, friend: WeComFriend) -> bool:
    """WeCom's add time is after the loss we recorded (a loss of unknown time: taken as so)."""
    return friend.lost_at is None or createtime > int(friend.lost_at.timestamp())


def reconcile_advisor(session: Session, corp_id: str, userid: str) -> dict[str, int]:
    observed_at = utcnow()
    version = int(observed_at.timestamp())
    try:
        theirs = fetch_relations(svc.gateway_for(corp_id), userid)
    except UpstreamError as exc:
        if exc.reason == "rejected" and exc.errcode == UNKNOWN_USER:
            log.warning("reconcile: %s is not a WeCom member (60111); skipped", userid)
            return {"created": 0, "reopened": 0, "closed": 0, "skipped": 1, "one_way": 0}
        raise  # retried by the outbox; nothing was changed
    staff = svc.staff_by_userid(session, corp_id, userid)
    ours = {
        f.external_userid: f
        for f in session.scalars(
            select(WeComFriend).where(WeComFriend.corp_id == corp_id, WeComFriend.userid == userid)
        )
    }
    stats = {"created": 0, "reopened": 0, "closed": 0, "skipped": 0, "one_way": 0}
    open_ours = [f for f in ours.values() if f.status in OPEN]
    if not theirs and len(open_ours) >= EMPTY_ANSWER_GUARD:
        log.warning("reconcile %s: WeCom lists no customers, we have %s open; none closed", userid, len(open_ours))
        return {**stats, "held": len(open_ours)}
    for ext in sorted(theirs):
        known = ours.get(ext)
        if known is not None and known.status in OPEN:
            continue
        contact, follow = theirs[ext]
        customer = svc.ensure_customer(session, ext, {"external_contact": contact})
        friend, created = svc.lock_friend(session, corp_id, userid, ext, customer, staff, FriendStatus.ACTIVE)
        # Changed by an event while we were looking (in the same second too: versions are whole
        # seconds): the event is newer.
        if not created and (friend.status in OPEN or version <= friend.version):
            continue
        createtime = int(follow.get("createtime") or 0)
        if not created and friend.status == FriendStatus.DELETED_BY_CUSTOMER and not _added_since(createtime, friend):
            # A customer who deleted the advisor stays in the advisor's list (a one-way contact,
            # as in WeChat): that is the loss we know of, not a return. A re-add shows as a
            # createtime after the loss.
            stats["one_way"] += 1
            continue
        added_at = datetime.fromtimestamp(createtime, UTC) if createtime > 0 else observed_at
        # Listed again with an add from before our own reconciliation closed it: the closure was
        # a mistake (a page WeCom left out one night). The customer was a friend all along: the
        # closure's loss leaves the channel's figures, and the timeline says they are back now.
        mistaken_closure = (
            not created
            and friend.status == FriendStatus.CLOSED
            and friend.lost_at is not None
            and 0 < createtime <= int(friend.lost_at.timestamp())
        )
        ref = f"reconcile:{friend.id}:{createtime}"
        if mistaken_closure:
            ref += f":after:{friend.version}"
        friend.status = FriendStatus.ACTIVE
        # The add's own time, not our clock: WeCom still lists a contact who deleted the advisor
        # (one-way), so an event later than the add — a deletion delivered late — must still win.
        friend.version = max(createtime, 0 if created else friend.version) if createtime > 0 else version
        friend.added_at = added_at
        friend.lost_at = None
        friend.state = follow.get("state") or friend.state
        if friend.state and friend.channel_id is None:
            channel = svc.channel_by_state(session, corp_id, friend.state)
            friend.channel_id = channel.id if channel else None
        svc.resolve_alerts(session, friend, observed_at)
        if staff is not None:
            svc.assign_advisor(session, customer, staff)
        svc.apply_follow(session, friend, _follow_for_apply(follow), ref, added_at)
        if mistaken_closure:
            svc.drop_reconciled_losses(session, friend)
        else:
            # Counted for its channel, once: the add's own event, if it comes late, is the same add.
            svc.record_channel_add(session, friend, friend.channel_id, ref, added_at)
        record(
            session,
            customer_id=friend.customer_id,
            kind=Kind.FRIEND_ADDED,
            channel=Channel.WECOM,
            source=SOURCE,
            source_ref=f"wecom:{ref}:{Kind.FRIEND_ADDED.value}",
            occurred_at=observed_at if mistaken_closure else added_at,
            advisor_id=friend.staff_id,
            store_id=staff.org_unit_id if staff else None,
            payload={
                "reconciled": True,
                "userid": userid,
                "external_userid": ext,
                "state": friend.state,
                **({"action": "reopened", "added_at": added_at.isoformat()} if mistaken_closure else {}),
            },
        )
        stats["created" if created or known is None else "reopened"] += 1
    for ext, known in sorted(ours.items()):
        if ext in theirs or known.status not in OPEN:
            continue
        friend = session.scalars(
            select(WeComFriend)
            .where(WeComFriend.id == known.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one()
        if friend.status not in OPEN or version <= friend.version:
            continue
        previous = friend.version
        friend.status = FriendStatus.CLOSED
        # Just after the last event we applied, not our clock: the loss happened somewhere
        # between the two, and its event, if it comes late, is newer and says how it ended.
        friend.version = previous + 1
        friend.lost_at = observed_at
        svc.record_channel_loss(session, friend, f"reconcile:{friend.id}:closed:{previous}", observed_at)
        record(
            session,
            customer_id=friend.customer_id,
            kind=Kind.FRIEND_RECONCILED,
            channel=Channel.WECOM,
            source=SOURCE,
            source_ref=f"wecom:reconcile:{friend.id}:closed:{previous}",
            occurred_at=observed_at,
            advisor_id=friend.staff_id,
            store_id=staff.org_unit_id if staff else None,
            payload={"reconciled": True, "action": "closed", "userid": userid, "external_userid": ext},
        )
        stats["closed"] += 1
    session.flush()
    if any(stats.values()):
        log.info("reconciled %s: %s", userid, stats)
    return stats
