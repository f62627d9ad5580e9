"""Customer handover between advisors: resigned-advisor inheritance
(`externalcontact/resigned/transfer_customer`) and on-duty transfer (`externalcontact/transfer_customer`).

A handover is our own ledger (`wecom_handover` + one item per customer), because WeCom's
`transfer_fail` event names neither the flow nor the advisor who handed over:

1. `start_handover` (a manager, in scope) records the items — the advisor's relations we know,
   plus for a resigned advisor WeCom's unassigned list — and enqueues the submission.
2. `submit_chunk` (job) sends at most 100 pending customers per call, one call per job run, so
   a failure (45009, 5xx) rolls back exactly that chunk and the outbox retries it. Customers
   WeCom refuses at once (errcode != 0) are final failures.
3. `poll` (job) reads `transfer_result` and re-schedules itself until every item is final:
   1 done → the relation, and the advisor role the takeover holds, move to the takeover
   advisor (a resigned advisor's other roles are removed);
   3 refused / 4 limit / 5 no record → a failure. Every takeover and every failure is a
   touchpoint; failures are sent to the store managers (and the requester) as one app message
   per handover step.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from backend.customers.models import Customer, CustomerAdvisor, CustomerIdentity, IdentityKind
from backend.customers.service import find_by_identity
from backend.org.models import Staff, StaffStatus
from backend.org.open_work import move_open_work
from backend.org.scope import get_scoped_or_404, register_scope, store_filter
from backend.org.service import managers_of_store
from backend.platform.actors import StaffActor
from backend.platform.db import DuplicateKey, unique_savepoint, utcnow
from backend.platform.errors import AppError, register_messages, upstream_error
from backend.platform.jobs import enqueue
from backend.platform.ports import UpstreamError
from backend.touchpoints.models import Channel, Kind, Touchpoint
from backend.touchpoints.service import rebuild_profiles, record
from backend.wecom import notify
from backend.wecom import service as svc
from backend.wecom.models import FriendStatus, WeComFriend
from backend.wecom.ops_models import (
    FAILED_ITEM_STATUSES,
    HandoverKind,
    HandoverStatus,
    ItemStatus,
    WeComHandover,
    WeComHandoverItem,
)

log = logging.getLogger("dealerloop.wecom.handover")

SOURCE = "wecom_handover"
SUBMIT_JOB = "wecom.handover.submit"
COLLECT_JOB = "wecom.handover.collect"
COLLECT_PAGES = 20  # pages of WeCom's unassigned list (1,000 each) read per run of the collect job
MAX_COLLECT_PAGES = 1000  # a hard stop against a cursor that never ends
IN_BATCH = 1000  # customers per `IN (...)` lookup
POLL_JOB = "wecom.handover.poll"
CHUNK = 100  # WeCom's limit per transfer_customer call
POLL_DELAY = timedelta(hours=1)  # WeCom completes a takeover within 24 h
MAX_POLLS = 72  # after three days without a final status an item is closed as "no record"
# ... unless the last polls could not read WeCom's answer: then up to a day more of polls, so
# that an outage at the end does not close takeovers WeCom has completed.
UNREAD_GRACE_POLLS = 24
MAX_ITEMS = 5000
# A customer WeCom already has in a transfer: our earlier call went through although its answer
# was lost (a timeout), so the poll will find the outcome. 40100 is WeCom's "用户的外部联系人已经
# 在转移流程中" (40097, by contrast, is "该成员尚未离职": a refusal); 40129 is the code
# third-party documentation gives for "当前客户正在转接中".
IN_TRANSFER_ERRCODES = frozenset({40100, 40129})
# A chunk WeCom could not take (timeout, 5xx, rate limit) is sent again after SUBMIT_RETRY, by a
# job of its own rather than the outbox's few tries, until SUBMIT_GIVE_UP after the handover
# was requested; then its customers fail, named, and the next chunk goes.
SUBMIT_RETRY = timedelta(minutes=5)
SUBMIT_GIVE_UP = timedelta(hours=24)
OPEN_STATUSES = (FriendStatus.ACTIVE, FriendStatus.HALF)
RESULT_STATUS = {
    1: ItemStatus.DONE,
    2: ItemStatus.WAITING,
    3: ItemStatus.REFUSED,
    4: ItemStatus.LIMIT,
    5: ItemStatus.NO_RECORD,
}
FAILURE_TEXT = {
    ItemStatus.REFUSED: "客户拒绝",
    ItemStatus.LIMIT: "接替顾问客户数已达上限",
    ItemStatus.NO_RECORD: "无接替记录",
    ItemStatus.REJECTED: "企业微信拒绝转接",
    ItemStatus.QUOTA_EXCEEDED: "90 天内已在职转接 2 次",
}
# WeCom lets a customer be transferred on duty at most twice in 90 days.
ON_DUTY_QUOTA = 2
ON_DUTY_QUOTA_WINDOW = timedelta(days=90)
ENDPOINTS = {
    HandoverKind.RESIGNED: ("externalcontact/resigned/transfer_customer", "externalcontact/resigned/transfer_result"),
    HandoverKind.ON_DUTY: ("externalcontact/transfer_customer", "externalcontact/transfer_result"),
}

register_messages(
    {
        "wecom.handover_not_found": ("交接记录不存在", "Handover not found"),
        "wecom.handover_same_advisor": ("交接顾问与接替顾问不能相同", "Handover and takeover advisor are the same"),
        "wecom.handover_not_resigned": ("离职继承要求原顾问已离职", "The handover advisor has not resigned"),
        "wecom.handover_advisor_resigned": ("原顾问已离职，请使用离职继承", "The handover advisor has resigned"),
        "wecom.takeover_inactive": ("接替顾问不在职", "The takeover advisor is not active"),
        "wecom.handover_nothing": ("没有可交接的客户", "No customers to hand over"),
        "wecom.handover_in_progress": ("这些客户已在交接中", "These customers are already being handed over"),
        "wecom.handover_corp_mismatch": ("接替顾问属于其他企业", "The takeover advisor is a member of another corp"),
        "wecom.handover_not_their_customer": (
            "部分客户不是原顾问的客户",
            "Some customers are not the handover advisor's",
        ),
    }
)

register_scope(
    "wecom_handover",
    WeComHandover,
    lambda actor: store_filter(actor, WeComHandover.store_id),
    "wecom.handover_not_found",
)


# ---------------------------------------------------------------------------------------------
# Start


def unassigned_page(gateway: Any, handover_userid: str, cursor: str) -> tuple[list[str], str]:
    """One page (1,000) of the customers WeCom lists as not yet assigned, those of this resigned
    advisor, and the cursor of the next page ("" after the last). WeCom's userids are
    case-insensitive: its list may spell the advisor's otherwise than our directory does."""
    page = gateway.post("externalcontact/get_unassigned_list", {"cursor": cursor, "page_size": 1000})
    theirs = handover_userid.casefold()
    found = [
        r["external_userid"] for r in page.get("info") or [] if (r.get("handover_userid") or "").casefold() == theirs
    ]
    next_cursor = page.get("next_cursor") or ""
    return found, "" if page.get("is_last", True) else next_cursor


def start_handover(
    session: Session,
    actor: StaffActor,
    *,
    kind: HandoverKind | str,
    handover_staff_id: int,
    takeover_staff_id: int,
    external_userids: list[str] | None = None,
    transfer_success_msg: str | None = None,
) -> WeComHandover:
    """Record the handover and its first customers. For a resigned advisor whose customers are
    not named, WeCom's unassigned list (the whole corp's, 1,000 a page) is read here for its
    first page only; a longer list is read by the `collect` job, and the submission starts when
    it is done. At most MAX_ITEMS customers per handover (`left_over` counts the rest)."""
    kind = HandoverKind(kind)
    handover_staff: Staff = get_scoped_or_404(session, actor, "staff", handover_staff_id)
    takeover_staff: Staff = get_scoped_or_404(session, actor, "staff", takeover_staff_id)
    if handover_staff.id == takeover_staff.id:
        raise AppError("wecom.handover_same_advisor", 422)
    if kind == HandoverKind.RESIGNED and handover_staff.status != StaffStatus.RESIGNED:
        raise AppError("wecom.handover_not_resigned", 409)
    if kind == HandoverKind.ON_DUTY and handover_staff.status != StaffStatus.ACTIVE:
        raise AppError("wecom.handover_advisor_resigned", 409)
    if takeover_staff.status != StaffStatus.ACTIVE:
        raise AppError("wecom.takeover_inactive", 409)
    corp_id = handover_staff.corp_id
    if takeover_staff.corp_id != corp_id:
        # userids repeat across corps: WeCom would hand the customers to its own namesake
        raise AppError("wecom.handover_corp_mismatch", 422, errors={"takeover_staff_id": ["a member of another corp"]})
    svc.configured_gateway(corp_id, "handover_staff_id")
    if _collecting(session, corp_id, handover_staff.wecom_userid):
        # Its list is still being read: a second handover would race it for the same pages.
        raise AppError("wecom.handover_in_progress", 409)
    more_from = ""  # the unassigned list's cursor where the collect job goes on
    if external_userids is None:
        ours = session.scalars(
            select(WeComFriend.external_userid)
            .where(
                WeComFriend.corp_id == corp_id,
                WeComFriend.userid == handover_staff.wecom_userid,
                WeComFriend.status.in_(OPEN_STATUSES),
            )
            .order_by(WeComFriend.id)
        ).all()
        wanted = list(ours)
        if kind == HandoverKind.RESIGNED:
            try:
                found, more_from = unassigned_page(svc.gateway_for(corp_id), handover_staff.wecom_userid, "")
            except UpstreamError as exc:
                raise upstream_error(exc) from exc
            wanted += found
    else:
        wanted = list(external_userids)
        _check_their_customers(session, corp_id, handover_staff.wecom_userid, wanted)
    if not any(wanted) and not more_from:  # (_add_items drops blanks and repeats)
        raise AppError("wecom.handover_nothing", 422)
    now = utcnow()
    handover = WeComHandover(
        corp_id=corp_id,
        kind=kind,
        handover_userid=handover_staff.wecom_userid,
        takeover_userid=takeover_staff.wecom_userid,
        handover_staff_id=handover_staff.id,
        takeover_staff_id=takeover_staff.id,
        store_id=handover_staff.org_unit_id,
        requested_by=actor.staff_id,
        transfer_success_msg=transfer_success_msg,
        status=HandoverStatus.COLLECTING if more_from else HandoverStatus.SUBMITTING,
        collect_cursor=more_from or None,
        collect_pages=1 if more_from else 0,
        collected_at=None if more_from else now,
        polls=0,
        left_over=0,
    )
    session.add(handover)
    session.flush()
    added = _add_items(session, handover, wanted)
    # Customers already in an open handover of this advisor are left to it. Two requests at once
    # meet here: the second's items wait on the first's in the open-key index, and once the
    # first has committed the second finds them taken, and its list being read.
    if not added and (not more_from or _collecting(session, corp_id, handover.handover_userid, besides=handover.id)):
        raise AppError("wecom.handover_in_progress", 409)
    if more_from:
        key = f"{COLLECT_JOB}:{handover.id}:page:1"
        enqueue(session, COLLECT_JOB, {"handover_id": handover.id}, dedup_key=key, key_is_new=True)  # a new handover
    else:
        key = f"{SUBMIT_JOB}:{handover.id}:0"
        enqueue(session, SUBMIT_JOB, {"handover_id": handover.id}, dedup_key=key, key_is_new=True)
    return handover


def _check_their_customers(session: Session, corp_id: str, handover_userid: str, externals: list[str]) -> None:
    """A named customer whom we know as another advisor's friend must be the handing-over
    advisor's friend too: a request may move only their customers, and learns nothing of other
    advisors'. One we know of no relation for is left to WeCom (a callback may have been lost),
    which refuses what is not theirs. Userids compare case-insensitively, as WeCom's do."""
    named = sorted({ext for ext in externals if ext})
    advisor = handover_userid.casefold()
    foreign: set[str] = set()
    for batch in _in_batches(named):
        holders = session.execute(
            select(WeComFriend.external_userid, WeComFriend.userid).where(
                WeComFriend.corp_id == corp_id, WeComFriend.external_userid.in_(batch)
            )
        ).all()
        theirs = {ext for ext, userid in holders if userid.casefold() == advisor}
        foreign.update(ext for ext, _userid in holders if ext not in theirs)
    if foreign:
        raise AppError("wecom.handover_not_their_customer", 422, errors={"external_userids": sorted(foreign)})


def _collecting(session: Session, corp_id: str, handover_userid: str, besides: int | None = None) -> bool:
    """Whether a handover of this advisor (another than `besides`) is reading WeCom's list now.
    One whose collect job has not moved for longer than its retries can take (the job died) no
    longer counts: it must not block the advisor for good."""
    alive_since = utcnow() - SUBMIT_GIVE_UP - timedelta(hours=1)
    stmt = select(WeComHandover.id).where(
        WeComHandover.corp_id == corp_id,
        WeComHandover.handover_userid == handover_userid,
        WeComHandover.status == HandoverStatus.COLLECTING,
        WeComHandover.updated_at > alive_since,
    )
    if besides is not None:
        stmt = stmt.where(WeComHandover.id != besides)
    return session.scalar(stmt.limit(1)) is not None


def _add_items(session: Session, handover: WeComHandover, externals: list[str]) -> int:
    """Items for these customers: pending up to MAX_ITEMS in this handover, `left_over` beyond
    (recorded, no open key: the next handover takes them). Customers in an open handover of
    the advisor, or in this one already (a page repeating one), are skipped. Returns how many
    pending items were added."""
    wanted = [e for e in dict.fromkeys(externals) if e]
    busy = _in_open_handovers(session, handover.corp_id, handover.handover_userid, wanted)
    busy |= _items_of(session, handover.id, wanted)
    fresh = [e for e in wanted if e not in busy]
    if not fresh:
        return 0
    pending = int(
        session.scalar(
            select(func.count())
            .select_from(WeComHandoverItem)
            .where(WeComHandoverItem.handover_id == handover.id, WeComHandoverItem.status != ItemStatus.LEFT_OVER)
        )
        or 0
    )
    room = max(0, MAX_ITEMS - pending)
    customers = _customers_by_external_userid(session, fresh)

    def row(ext: str, taken: bool) -> dict[str, Any]:
        return {
            "handover_id": handover.id,
            "external_userid": ext,
            "customer_id": customers.get(ext),
            "open_key": _open_key(handover.corp_id, handover.handover_userid, ext) if taken else None,
            "status": ItemStatus.PENDING if taken else ItemStatus.LEFT_OVER,
        }

    rows = [row(ext, True) for ext in fresh[:room]]
    left = [row(ext, False) for ext in fresh[room:]]
    if left:
        session.execute(insert(WeComHandoverItem), left)
        handover.left_over += len(left)
    if not rows:
        return 0
    try:
        with unique_savepoint(session):  # all at once; a concurrent handover took some: one by one
            session.execute(insert(WeComHandoverItem), rows)
        return len(rows)
    except DuplicateKey:
        added = 0
        for one in rows:
            try:
                with unique_savepoint(session):
                    session.execute(insert(WeComHandoverItem), [one])
                added += 1
            except DuplicateKey:  # in an open handover of this advisor started meanwhile
                continue
        return added


def _items_of(session: Session, handover_id: int, externals: list[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _in_batches(externals):
        found.update(
            session.scalars(
                select(WeComHandoverItem.external_userid).where(
                    WeComHandoverItem.handover_id == handover_id, WeComHandoverItem.external_userid.in_(chunk)
                )
            )
        )
    return found


def _in_batches(values: list[str]) -> Iterator[list[str]]:
    """The values in slices small enough for one `IN (...)` each."""
    for start in range(0, len(values), IN_BATCH):
        yield values[start : start + IN_BATCH]


def _open_key(corp_id: str, handover_userid: str, external_userid: str) -> str:
    """Unique while the item is open: one open handover per (advisor, customer)."""
    return f"{corp_id}:{handover_userid}:{external_userid}"[:191]


def _in_open_handovers(session: Session, corp_id: str, handover_userid: str, externals: list[str]) -> set[str]:
    keys = {_open_key(corp_id, handover_userid, ext): ext for ext in externals}
    busy: set[str] = set()
    for chunk in _in_batches(list(keys)):
        busy.update(
            keys[k]
            for k in session.scalars(select(WeComHandoverItem.open_key).where(WeComHandoverItem.open_key.in_(chunk)))
        )
    return busy


def _customers_by_external_userid(session: Session, externals: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _in_batches(externals):
        rows = session.execute(
            select(CustomerIdentity.value, CustomerIdentity.customer_id).where(
                CustomerIdentity.kind == IdentityKind.EXTERNAL_USERID, CustomerIdentity.value.in_(chunk)
            )
        )
        found.update((value, customer_id) for value, customer_id in rows)
    return found


# ---------------------------------------------------------------------------------------------
# Collect (a long unassigned list, a few pages per run)


def collect(session: Session, handover_id: int) -> str:
    """Read COLLECT_PAGES more pages of WeCom's unassigned list into the handover, then go on
    in another run, or start the submission once the list is read. WeCom failing: the pages
    read so far are kept and the job tries again after SUBMIT_RETRY, for up to SUBMIT_GIVE_UP;
    then, or after MAX_COLLECT_PAGES, or when WeCom repeats a cursor, the submission starts
    with what was read and the cursor stays on the handover (`list_incomplete`)."""
    handover = _lock(session, handover_id)
    if handover is None or handover.status != HandoverStatus.COLLECTING:
        return "skipped"
    now = utcnow()
    gateway = svc.gateway_for(handover.corp_id)
    failed: UpstreamError | None = None
    stuck = False
    for _ in range(COLLECT_PAGES):
        cursor = handover.collect_cursor or ""
        try:
            found, following = unassigned_page(gateway, handover.handover_userid, cursor)
        except UpstreamError as exc:
            failed = exc
            break
        _add_items(session, handover, found)
        handover.collect_pages += 1
        stuck = following == cursor or handover.collect_pages >= MAX_COLLECT_PAGES
        handover.collect_cursor = following or None
        if not following or stuck:
            break
    if failed is not None and _retry_later(session, COLLECT_JOB, handover, failed, now):
        return "retrying"
    if failed is None and handover.collect_cursor and not stuck:
        enqueue(
            session,
            COLLECT_JOB,
            {"handover_id": handover.id},
            dedup_key=f"{COLLECT_JOB}:{handover.id}:page:{handover.collect_pages}",
        )
        return "more"
    if handover.collect_cursor:
        log.warning(
            "handover %s: unassigned list not read to the end (%s); submitting what was read",
            handover.id,
            failed or f"cursor repeated or {handover.collect_pages} pages",
        )
    handover.status = HandoverStatus.SUBMITTING
    handover.collected_at = now
    enqueue(session, SUBMIT_JOB, {"handover_id": handover.id}, dedup_key=f"{SUBMIT_JOB}:{handover.id}:0")
    return "collected"


# ---------------------------------------------------------------------------------------------
# Submit (one chunk per run)


def _lock(session: Session, handover_id: int) -> WeComHandover | None:
    return session.scalars(
        select(WeComHandover)
        .where(WeComHandover.id == handover_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


def submit_chunk(session: Session, handover_id: int) -> str:
    handover = _lock(session, handover_id)
    if handover is None or handover.status != HandoverStatus.SUBMITTING:
        return "skipped"
    items = session.scalars(
        select(WeComHandoverItem)
        .where(WeComHandoverItem.handover_id == handover.id, WeComHandoverItem.status == ItemStatus.PENDING)
        .order_by(WeComHandoverItem.id)
        .limit(CHUNK)
    ).all()
    if not items:
        return _after_submission(session, handover)
    now = utcnow()
    contacts = _ContactReader(handover.corp_id)
    failed: list[WeComHandoverItem] = []
    if handover.kind == HandoverKind.ON_DUTY:
        over = _over_on_duty_quota(session, handover, [i.external_userid for i in items], now)
        for item in items:
            if item.external_userid in over:
                _fail(session, handover, item, ItemStatus.QUOTA_EXCEEDED, now, contacts)
                failed.append(item)
        items = [i for i in items if i.external_userid not in over]
    if not items:
        _alert_failures(session, handover, failed, f"submit:{failed[0].id}")
        return _next_chunk(session, handover)
    submit_path, _ = ENDPOINTS[handover.kind]
    payload: dict[str, Any] = {
        "handover_userid": handover.handover_userid,
        "takeover_userid": handover.takeover_userid,
        "external_userid": [i.external_userid for i in items],
    }
    if handover.kind == HandoverKind.ON_DUTY and handover.transfer_success_msg:
        payload["transfer_success_msg"] = handover.transfer_success_msg
    in_transfer = IN_TRANSFER_ERRCODES  # per customer only: a whole call refused is refused
    try:
        result = svc.gateway_for(handover.corp_id).post(submit_path, payload)
    except UpstreamError as exc:
        if _retry_later(session, SUBMIT_JOB, handover, exc, now):
            return "retrying"  # nothing of this chunk is applied
        # WeCom refuses the whole call (e.g. 40097: the advisor has not left in WeCom), or kept
        # failing for a day: every customer of the chunk is a failure with that errcode.
        log.warning("handover %s: WeCom refused the chunk: %s", handover.id, exc)
        result = {"customer": [{"external_userid": i.external_userid, "errcode": exc.errcode or -1} for i in items]}
        in_transfer = frozenset()
    errcodes = {c.get("external_userid"): int(c.get("errcode", -1)) for c in result.get("customer") or []}
    for item in items:
        errcode = errcodes.get(item.external_userid, -1)
        item.submitted_at = now
        if errcode == 0 or errcode in in_transfer:
            item.status = ItemStatus.WAITING
            _touch_started(session, handover, item, now, contacts)
        else:
            item.errcode = errcode
            _fail(session, handover, item, ItemStatus.REJECTED, now, contacts)
            failed.append(item)
    _alert_failures(session, handover, failed, f"submit:{min(i.id for i in [*items, *failed])}")
    return _next_chunk(session, handover)


def _retry_later(session: Session, job_name: str, handover: WeComHandover, exc: UpstreamError, now: datetime) -> bool:
    """WeCom could not answer (timeout, 5xx, rate limit): the job runs again after SUBMIT_RETRY,
    as a job of its own rather than on the outbox's few quick tries (WeCom may be down for a
    while, and the handover would stay half-way), until SUBMIT_GIVE_UP after the request.
    False when it should not: a refusal, or a day gone by."""
    # A day from the request for reading the list, from the end of the reading (`collected_at`,
    # unset while it is read) for the submission.
    since = handover.collected_at or handover.created_at
    if not exc.transient or now >= since + SUBMIT_GIVE_UP:
        return False
    log.warning("handover %s: %s failed (%s), again in %s", handover.id, job_name, exc, SUBMIT_RETRY)
    enqueue(
        session,
        job_name,
        {"handover_id": handover.id},
        dedup_key=f"{job_name}:{handover.id}:retry:{now.isoformat()}",
        delay=SUBMIT_RETRY,
    )
    return True


def _next_chunk(session: Session, handover: WeComHandover) -> str:
    """The next chunk's job while customers wait to be sent, else on to polling."""
    more = session.scalar(
        select(WeComHandoverItem.id)
        .where(WeComHandoverItem.handover_id == handover.id, WeComHandoverItem.status == ItemStatus.PENDING)
        .order_by(WeComHandoverItem.id)
        .limit(1)
    )
    if more is not None:
        enqueue(session, SUBMIT_JOB, {"handover_id": handover.id}, dedup_key=f"{SUBMIT_JOB}:{handover.id}:{more}")
        return "more"
    return _after_submission(session, handover)


def _over_on_duty_quota(
    session: Session, handover: WeComHandover, external_userids: list[str], now: datetime
) -> set[str]:
    """The customers WeCom already accepted for an on-duty transfer twice in the last 90 days (in
    any handover of this corp): sending them again can only fail, so they fail here, named."""
    rows = session.execute(
        select(WeComHandoverItem.external_userid, func.count())
        .join(WeComHandover, WeComHandover.id == WeComHandoverItem.handover_id)
        .where(
            WeComHandover.corp_id == handover.corp_id,
            WeComHandover.kind == HandoverKind.ON_DUTY,
            WeComHandover.id != handover.id,
            WeComHandoverItem.external_userid.in_(external_userids),
            WeComHandoverItem.status.in_((ItemStatus.WAITING, ItemStatus.DONE)),
            WeComHandoverItem.submitted_at >= now - ON_DUTY_QUOTA_WINDOW,
        )
        .group_by(WeComHandoverItem.external_userid)
    ).all()
    return {ext for ext, n in rows if n >= ON_DUTY_QUOTA}


def _after_submission(session: Session, handover: WeComHandover) -> str:
    if _waiting_count(session, handover) == 0:
        _finish(handover)
        return "finished"
    handover.status = HandoverStatus.POLLING
    _schedule_poll(session, handover)
    return "polling"


def _schedule_poll(session: Session, handover: WeComHandover) -> None:
    enqueue(
        session,
        POLL_JOB,
        {"handover_id": handover.id},
        dedup_key=f"{POLL_JOB}:{handover.id}:{handover.polls}",
        delay=POLL_DELAY,
    )


def _waiting_count(session: Session, handover: WeComHandover) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(WeComHandoverItem)
            .where(WeComHandoverItem.handover_id == handover.id, WeComHandoverItem.status == ItemStatus.WAITING)
        )
        or 0
    )


def _finish(handover: WeComHandover) -> None:
    handover.status = HandoverStatus.FINISHED
    handover.finished_at = utcnow()


# ---------------------------------------------------------------------------------------------
# Poll


def transfer_results(gateway: Any, path: str, handover: WeComHandover) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    cursor = ""
    for _ in range(1000):
        page = gateway.post(
            path,
            {
                "handover_userid": handover.handover_userid,
                "takeover_userid": handover.takeover_userid,
                "cursor": cursor,
            },
        )
        for row in page.get("customer") or []:
            rows[row.get("external_userid", "")] = row
        cursor = page.get("next_cursor") or ""
        if not cursor:
            break
    return rows


def poll(session: Session, handover_id: int) -> str:
    handover = _lock(session, handover_id)
    if handover is None or handover.status != HandoverStatus.POLLING:
        return "skipped"
    _, result_path = ENDPOINTS[handover.kind]
    read = True
    try:
        results = transfer_results(svc.gateway_for(handover.corp_id), result_path, handover)
    except UpstreamError as exc:
        # No news this hour: it counts as a poll, and the next one asks again (raising would
        # leave the handover to the outbox's few tries, then stuck in `polling`).
        log.warning("handover %s: transfer results not read (%s); polling again later", handover.id, exc)
        results, read = {}, False
    handover.polls += 1
    give_up = handover.polls >= (MAX_POLLS if read else MAX_POLLS + UNREAD_GRACE_POLLS)
    now = utcnow()
    waiting = session.scalars(
        select(WeComHandoverItem)
        .where(WeComHandoverItem.handover_id == handover.id, WeComHandoverItem.status == ItemStatus.WAITING)
        .order_by(WeComHandoverItem.id)
    ).all()
    failed = []
    contacts = _ContactReader(handover.corp_id)
    for item in waiting:
        row = results.get(item.external_userid)
        status = RESULT_STATUS.get(int(row.get("status", 2))) if row else ItemStatus.WAITING
        if status is None:
            status = ItemStatus.WAITING
        if status == ItemStatus.WAITING and give_up:
            status = ItemStatus.NO_RECORD
        if status == ItemStatus.DONE:
            takeover_ts = int(row.get("takeover_time") or 0) if row else 0
            takeover_at = datetime.fromtimestamp(takeover_ts, UTC) if takeover_ts > 0 else now
            _take_over(session, handover, item, takeover_at, contacts)
        elif status != ItemStatus.WAITING:
            _fail(session, handover, item, status, now, contacts)
            failed.append(item)
    _alert_failures(session, handover, failed, f"poll:{handover.polls}")
    if _waiting_count(session, handover):
        _schedule_poll(session, handover)
        return "polling"
    _finish(handover)
    return "finished"


# ---------------------------------------------------------------------------------------------
# Effects of a final status


class _ContactReader:
    """WeCom's detail (`externalcontact/get`) of the contacts a job run creates customers for, one
    call each. Once a call fails, the rest of the run goes without: those customers are created
    without a name (the takeover asks again) rather than the run waiting on WeCom's timeout a
    hundred times while it holds the handover's lock."""

    def __init__(self, corp_id: str) -> None:
        self.corp_id = corp_id
        self.failing = False

    def detail(self, external_userid: str) -> dict[str, Any] | None:
        if self.failing:
            return None
        try:
            return svc.fetch_contact(svc.gateway_for(self.corp_id), external_userid)
        except UpstreamError as exc:
            log.warning("contact detail not read (%s): customers of this run stay without a name", exc)
            self.failing = True
            return None


def _item_customer(
    session: Session, handover: WeComHandover, item: WeComHandoverItem, contacts: _ContactReader
) -> Customer:
    """The item's customer. One we never knew (only WeCom's unassigned list names them: an add
    callback was lost) is created as an add would create them, with their WeCom name, and
    belongs to the handover's store until an advisor takes them: its manager is the one told to
    handle a failed transfer, and must be able to open the customer."""
    customer = find_by_identity(session, IdentityKind.EXTERNAL_USERID, item.external_userid)
    if customer is None or not customer.name:
        customer = svc.ensure_customer(session, item.external_userid, contacts.detail(item.external_userid))
    if customer.home_store_id is None:
        customer.home_store_id = handover.store_id
    item.customer_id = customer.id
    return customer


def _customer_id(session: Session, handover: WeComHandover, item: WeComHandoverItem, contacts: _ContactReader) -> int:
    if item.customer_id is None:
        return _item_customer(session, handover, item, contacts).id
    return item.customer_id


def _take_over(
    session: Session, handover: WeComHandover, item: WeComHandoverItem, at: datetime, contacts: _ContactReader
) -> None:
    """The takeover advisor now has the customer: relations, advisor assignment, touchpoints."""
    item.status = ItemStatus.DONE
    item.takeover_time = at
    item.finished_at = utcnow()
    item.open_key = None
    customer = _item_customer(session, handover, item, contacts)
    customer_id = customer.id
    version = int(at.timestamp())
    takeover = session.get(Staff, handover.takeover_staff_id)
    old = session.scalars(
        select(WeComFriend)
        .where(
            WeComFriend.corp_id == handover.corp_id,
            WeComFriend.userid == handover.handover_userid,
            WeComFriend.external_userid == item.external_userid,
        )
        .with_for_update()
    ).one_or_none()
    # WeCom's DELETE_BY_TRANSFER callback for this transfer, processed first, recorded it already.
    told_by_callback = old is not None and old.status == FriendStatus.TRANSFERRED
    if old is not None and version >= old.version:
        old.status = FriendStatus.TRANSFERRED
        old.version = version
        old.lost_at = None
    friend, _ = svc.lock_friend(
        session,
        handover.corp_id,
        handover.takeover_userid,
        item.external_userid,
        customer,
        takeover,
        FriendStatus.ACTIVE,
    )
    if version >= friend.version:
        friend.status = FriendStatus.ACTIVE
        friend.version = version
        friend.added_at = friend.added_at or at
        friend.lost_at = None
        if old is not None:
            friend.channel_id = friend.channel_id or old.channel_id
            friend.state = friend.state or old.state
        svc.resolve_alerts(session, friend, at)
    role = svc.advisor_role(takeover) if takeover is not None else None
    held = session.scalars(
        select(CustomerAdvisor)
        .where(CustomerAdvisor.customer_id == customer_id, CustomerAdvisor.staff_id == handover.handover_staff_id)
        .order_by(CustomerAdvisor.id)
        .with_for_update()
    ).all()
    # Only the role the takeover holds moves to them: consultations and leads are routed by role,
    # and a service advisor must not become the customer's sales advisor. A resigned advisor's
    # other roles are nobody's now (the store's routing assigns someone); an advisor on duty
    # hands over the WeCom relation and keeps them.
    moved = [a for a in held if a.role == role]
    unassigned = [a for a in held if a.role != role] if handover.kind == HandoverKind.RESIGNED else []
    moved_roles, unassigned_roles = [a.role for a in moved], [a.role for a in unassigned]
    for assignment in moved:
        assignment.staff_id = handover.takeover_staff_id
        assignment.assigned_at = at
    for assignment in unassigned:
        session.delete(assignment)
    holds_role = bool(moved)
    if takeover is not None and role is not None and not moved:
        svc.assign_advisor(session, customer, takeover)  # unless someone else holds that role
        holds_role = svc.role_holder(session, customer_id, takeover) == takeover.id
    # The customer follows the takeover to their store when the takeover now advises them and
    # the handing-over advisor no longer does (follow_advisor_store says why).
    follows = takeover is not None and holds_role and len(moved) + len(unassigned) == len(held)
    # The customer's open leads and consultations go with them: a resigned advisor's all (to the
    # takeover where they may take them, else to the store's routing), an advisor on duty's of
    # the takeover's role only.
    handing = session.get(Staff, handover.handover_staff_id)
    work_roles = None if handover.kind == HandoverKind.RESIGNED else ({role} if role else set())
    if handing is not None:
        move_open_work(
            session,
            handing,
            takeover,
            at,
            customer_ids=[customer_id],
            roles=work_roles,
            reason=f"wecom handover {handover.id}",
        )
    if takeover is not None:
        # The customer's work nobody holds goes to the advisor who inherits them. A resigned
        # handover comes after the departure (WeCom and dealerloop must have the advisor as
        # gone first), whose job has already put the leaver's work back in the store's queue:
        # what nobody has taken since follows the customer, what someone took stays theirs.
        move_open_work(
            session,
            None,
            takeover,
            at,
            customer_ids=[customer_id],
            roles=work_roles,
            reason=f"wecom handover {handover.id}: waiting work",
        )
    home_store_id = svc.follow_advisor_store(session, customer_id, handover.store_id, takeover) if follows else None
    store_id = takeover.org_unit_id if takeover else None
    payload = {
        "handover_id": handover.id,
        "kind": handover.kind.value,
        "handover_userid": handover.handover_userid,
        "takeover_userid": handover.takeover_userid,
        "external_userid": item.external_userid,
    }
    if home_store_id is not None:
        payload["home_store_moved"] = {"from": handover.store_id, "to": home_store_id}
    if not told_by_callback:
        record(
            session,
            customer_id=customer_id,
            kind=Kind.FRIEND_TRANSFERRED,
            channel=Channel.WECOM,
            source=SOURCE,
            source_ref=f"wecom:handover:{item.id}:{Kind.FRIEND_TRANSFERRED.value}",
            occurred_at=at,
            advisor_id=handover.takeover_staff_id,
            store_id=store_id,
            payload=payload,
        )
    else:
        # WeCom's DELETE_BY_TRANSFER came first and recorded the transfer as the old advisor's:
        # it is this handover's, and reads the same as when the poll comes first.
        told = session.execute(
            update(Touchpoint)
            .where(
                Touchpoint.customer_id == customer_id,
                Touchpoint.kind == Kind.FRIEND_TRANSFERRED,
                Touchpoint.source == svc.SOURCE,
                Touchpoint.advisor_id == handover.handover_staff_id,
                # this transfer's, not one of an earlier friendship with the same advisor
                Touchpoint.occurred_at >= (item.submitted_at or at) - CLOCK_SKEW,
            )
            .values(source=SOURCE, advisor_id=handover.takeover_staff_id, store_id=store_id, payload=payload)
        )
        if told.rowcount:
            rebuild_profiles(session, [customer_id])
    record(
        session,
        customer_id=customer_id,
        kind=Kind.ADVISOR_ASSIGNED,
        channel=Channel.SYSTEM,
        source=SOURCE,
        source_ref=f"wecom:handover:{item.id}:{Kind.ADVISOR_ASSIGNED.value}",
        occurred_at=at,
        advisor_id=handover.takeover_staff_id,
        store_id=store_id,
        payload={
            **payload,
            "role": role,
            "moved": moved_roles,
            "unassigned": unassigned_roles,
            "reassigned": bool(moved_roles),
        },
    )


def _touch_started(
    session: Session, handover: WeComHandover, item: WeComHandoverItem, at: datetime, contacts: _ContactReader
) -> None:
    record(
        session,
        customer_id=_customer_id(session, handover, item, contacts),
        kind=Kind.TRANSFER_STARTED,
        channel=Channel.WECOM,
        source=SOURCE,
        source_ref=f"wecom:handover:{item.id}:{Kind.TRANSFER_STARTED.value}",
        occurred_at=at,
        advisor_id=handover.handover_staff_id,
        store_id=handover.store_id,
        payload={
            "handover_id": handover.id,
            "kind": handover.kind.value,
            "handover_userid": handover.handover_userid,
            "takeover_userid": handover.takeover_userid,
        },
    )


def _fail(
    session: Session,
    handover: WeComHandover,
    item: WeComHandoverItem,
    status: ItemStatus,
    at: datetime,
    contacts: _ContactReader,
) -> None:
    item.status = status
    item.finished_at = at
    item.open_key = None
    if item.customer_id is None and status == ItemStatus.REJECTED:
        # WeCom refused an id we never knew (e.g. 84061, not a contact): no customer to invent.
        return
    record(
        session,
        customer_id=_customer_id(session, handover, item, contacts),
        kind=Kind.TRANSFER_FAILED,
        channel=Channel.WECOM,
        source=SOURCE,
        source_ref=f"wecom:handover:{item.id}:{Kind.TRANSFER_FAILED.value}",
        occurred_at=at,
        advisor_id=handover.handover_staff_id,
        store_id=handover.store_id,
        payload={
            "handover_id": handover.id,
            "kind": handover.kind.value,
            "status": status.value,
            "errcode": item.errcode,
            "handover_userid": handover.handover_userid,
            "takeover_userid": handover.takeover_userid,
        },
    )


# WeCom's transfer_fail callback names its reason; the result poll would say the same by status.
FAIL_REASON_STATUS = {"customer_refused": ItemStatus.REFUSED, "customer_limit_exceed": ItemStatus.LIMIT}


def fail_told_by_callback(
    session: Session, corp_id: str, takeover_userid: str, external_userid: str, reason: str, at: datetime
) -> bool:
    """WeCom's transfer_fail callback for a customer one of our handovers sent to this takeover
    advisor: one failure, recorded once. When the item still waits, it fails now with WeCom's
    reason (its touchpoint and the managers' alert are the handover's; the poll, finding it
    final, leaves it). When the poll told it first, there is nothing more to record. True in
    both cases; False for a failure no handover of ours knows (a transfer made in the admin
    console), which the callback records itself."""
    row = session.execute(
        select(WeComHandoverItem.id, WeComHandoverItem.handover_id)
        .join(WeComHandover, WeComHandover.id == WeComHandoverItem.handover_id)
        .where(
            WeComHandover.corp_id == corp_id,
            WeComHandover.takeover_userid == takeover_userid,
            WeComHandoverItem.external_userid == external_userid,
            WeComHandoverItem.submitted_at <= at + CLOCK_SKEW,
            # Waiting, or failed by a poll that ran after this failure happened.
            (WeComHandoverItem.status == ItemStatus.WAITING)
            | (
                WeComHandoverItem.status.in_(FAIL_REASON_STATUS.values())
                & (WeComHandoverItem.finished_at >= at - CLOCK_SKEW)
            ),
        )
        .order_by(WeComHandoverItem.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return False
    handover = _lock(session, row.handover_id)  # the poll's lock: one of the two fails the item
    item = session.scalars(
        select(WeComHandoverItem)
        .where(WeComHandoverItem.id == row.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if handover is None:
        return False
    if item.status == ItemStatus.WAITING:
        status = FAIL_REASON_STATUS.get(reason, ItemStatus.REFUSED)
        _fail(session, handover, item, status, utcnow(), _ContactReader(corp_id))
        _alert_failures(session, handover, [item], f"callback:{item.id}")
    return item.status in FAIL_REASON_STATUS.values()


CLOCK_SKEW = timedelta(minutes=2)  # between WeCom's CreateTime and our clock


def _alert_failures(session: Session, handover: WeComHandover, failed: list[WeComHandoverItem], step: str) -> None:
    """One app message per handover step to the store managers and the requester."""
    if not failed:
        return
    people = managers_of_store(session, handover.store_id)
    if handover.requested_by is not None:
        requester = session.get(Staff, handover.requested_by)
        if requester is not None:
            people.append(requester)
    handover_staff = session.get(Staff, handover.handover_staff_id)
    takeover_staff = session.get(Staff, handover.takeover_staff_id)
    counts: dict[str, int] = {}
    for item in failed:
        label = FAILURE_TEXT.get(item.status, item.status.value)
        counts[label] = counts.get(label, 0) + 1
    reasons = "，".join(f"{label} {n} 位" for label, n in counts.items())
    who = f"{handover_staff.name if handover_staff else handover.handover_userid} → "
    who += takeover_staff.name if takeover_staff else handover.takeover_userid
    sent = notify.notify_staff(
        session,
        notify.NotifyKind.HANDOVER_FAILED,
        f"handover:{handover.id}:{step}",
        people,
        card=notify.Card(
            title="客户交接失败",
            description=f"{who}：{len(failed)} 位客户交接失败（{reasons}），请处理。",
            url=notify.page_link(f"/workbench/handovers/{handover.id}"),  # the workbench page, as other cards
        ),
    )
    if not sent:
        log.warning("handover %s: %s failures and nobody to tell", handover.id, len(failed))


def _item_view(item: WeComHandoverItem) -> dict[str, Any]:
    columns = ("external_userid", "customer_id", "status", "errcode", "takeover_time", "submitted_at", "finished_at")
    return {c: getattr(item, c) for c in columns}


def handover_view(session: Session, handover: WeComHandover) -> dict[str, Any]:
    counts = dict(
        session.execute(
            select(WeComHandoverItem.status, func.count())
            .where(WeComHandoverItem.handover_id == handover.id)
            .group_by(WeComHandoverItem.status)
        ).all()
    )
    items = session.scalars(
        select(WeComHandoverItem).where(WeComHandoverItem.handover_id == handover.id).order_by(WeComHandoverItem.id)
    ).all()
    columns = ("id", "kind", "status", "handover_userid", "takeover_userid", "handover_staff_id")
    columns += ("takeover_staff_id", "store_id", "requested_by", "polls", "created_at", "finished_at")
    # Names, for the manager reading the results (the card's page): one query each, not per item.
    staff_ids = {handover.handover_staff_id, handover.takeover_staff_id}
    staff_names = dict(session.execute(select(Staff.id, Staff.name).where(Staff.id.in_(staff_ids))).all())
    customer_ids = {item.customer_id for item in items if item.customer_id is not None}
    customer_names = (
        dict(session.execute(select(Customer.id, Customer.name).where(Customer.id.in_(customer_ids))).all())
        if customer_ids
        else {}
    )
    return {
        **{c: getattr(handover, c) for c in columns},
        "handover_staff_name": staff_names.get(handover.handover_staff_id),
        "takeover_staff_name": staff_names.get(handover.takeover_staff_id),
        "counts": {str(getattr(k, "value", k)): int(v) for k, v in counts.items()},
        "failed": sum(int(v) for k, v in counts.items() if ItemStatus(k) in FAILED_ITEM_STATUSES),
        "items": [{**_item_view(item), "customer_name": customer_names.get(item.customer_id)} for item in items],
        "left_over": handover.left_over,
        # WeCom's unassigned list could not be read to the end: a new request reads it again.
        "list_incomplete": handover.status != HandoverStatus.COLLECTING and handover.collect_cursor is not None,
    }
