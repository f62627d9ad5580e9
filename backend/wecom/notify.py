"""Messages to advisors: WeCom app messages (`message/send`, text or text card) for new leads,
new consultations, lost customers, failed handovers and weak-item alerts.

- `notify(...)` records one `AppMessage` per recipient in the caller's transaction, keyed by
  (kind, business key, recipient): the same notification asked for twice is recorded once. The
  delivery job is enqueued through the outbox, so nothing is sent for a rolled-back change.
- Delivery (`deliver`, the job body of every app message, callback alerts included) applies a
  sliding-window limit per recipient. The window lives in Redis (a sorted set per recipient);
  when Redis is unreachable it degrades to counting the recipient rows of sent messages in the
  database. A message over the limit is deferred (re-enqueued for when the window frees), not
  dropped.
- A failed send (5xx, timeout, 45009 ...) is recorded on the message and retried with backoff
  through the outbox; after the last try the message is left `failed` with its error. (An
  expired token, 42001, is refreshed once by the client itself.)
- Every sent message keeps its msgid, invalid users and one recipient row per user.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import current_app
from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session

from backend.org.models import Staff, StaffStatus
from backend.platform.db import DuplicateKey, unique_savepoint, utcnow
from backend.platform.jobs import enqueue
from backend.platform.ports import UpstreamError
from backend.wecom.models import AppMessage
from backend.wecom.ops_models import AppMessageRecipient

log = logging.getLogger("dealerloop.wecom.notify")

APP_MESSAGE_JOB = "wecom.send_app_message"  # the job of backend/wecom/jobs.py
RETRY_DELAYS = (10, 60, 300, 1800)
# WeCom drops a message whose request is the same as one it took within this many seconds (at
# most 4 h). A try whose answer was lost (a timeout, our commit failing after WeCom took it) is
# sent again byte for byte by the retries, all within this: the advisor gets it once.
DUPLICATE_CHECK_SECONDS = 4 * 3600
DEFAULT_RATE_LIMIT = 30  # messages per recipient ...
DEFAULT_RATE_WINDOW = 600  # ... per this many seconds
FINAL = ("sent", "failed")


class NotifyKind(enum.StrEnum):
    NEW_LEAD = "new_lead"
    NEW_CONSULTATION = "new_consultation"
    LOST_CUSTOMER = "lost_customer"
    HANDOVER_FAILED = "handover_failed"
    WEAK_ITEM = "weak_item"
    PAYMENT_ISSUE = "payment_issue"
    CAMPAIGN_BUDGET = "campaign_budget"  # a campaign's or rule's points budget ran out


@dataclass(frozen=True)
class Card:
    """A WeCom `textcard`: title ≤ 128 bytes, description ≤ 512 bytes, button text ≤ 4 chars."""

    title: str
    description: str
    url: str
    btntxt: str = "详情"

    def content(self) -> dict[str, str]:
        if len(self.url.encode()) > URL_BYTES:
            raise ValueError(f"a card link longer than {URL_BYTES} bytes would be cut, and broken, by WeCom")
        return {
            "title": _clip_bytes(plain(self.title), 128),
            "description": _clip_bytes(plain(self.description), 512),
            "url": self.url,
            "btntxt": self.btntxt[:4],
        }


# WeCom's limits on what it accepts whole, room left for what `_distinct` adds: the reference
# (a text's number; a card link's `msg=<id>`, and its `app=<key>`, 21 bytes).
TEXT_BYTES = 2048 - 32
URL_BYTES = 2048 - 64


def plain(text: str) -> str:
    """Text with no markup: WeCom renders <a href> in text messages and <div class> in card
    descriptions, and our texts carry names and words that customers typed (a nickname could be
    a tappable link to a phishing page). The brackets become their full-width look-alikes."""
    return text.replace("<", "＜").replace(">", "＞")


def _clip_bytes(text: str, limit: int) -> str:
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[:limit].decode(errors="ignore")


def dedup_key(kind: str, key: str, corp_id: str, userid: str) -> str:
    # The corp belongs in it: one userid (a common pinyin) can be two people in two corps.
    raw = f"n:{kind}:{key}:{corp_id}:{userid}"
    if len(raw) <= 191:
        return raw
    return f"n:{kind}:{hashlib.sha256(raw.encode()).hexdigest()}"


def notify(
    session: Session,
    corp_id: str,
    kind: NotifyKind | str,
    key: str,
    recipients: list[str],
    *,
    text: str | None = None,
    card: Card | None = None,
) -> list[AppMessage]:
    """Record the notification for each recipient (once per kind + key + recipient) and send it
    after commit. Returns the messages recorded now (an already-recorded one is not repeated)."""
    if (text is None) == (card is None):
        raise ValueError("give either text or card")
    kind = NotifyKind(kind)
    created = []
    for userid in dict.fromkeys(u for u in recipients if u):
        if card is not None:
            msgtype, content = "textcard", card.content()
        else:
            msgtype, content = "text", {"content": _clip_bytes(plain(text or ""), TEXT_BYTES)}
        message = AppMessage(
            dedup_key=dedup_key(kind.value, key, corp_id, userid),
            touser=[userid],
            msgtype=msgtype,
            content={**content, "corp_id": corp_id},
            kind=kind.value,
            attempts=0,
        )
        try:
            with unique_savepoint(session):
                session.add(message)
        except DuplicateKey:
            continue
        enqueue(session, APP_MESSAGE_JOB, {"message_id": message.id}, dedup_key=f"{APP_MESSAGE_JOB}:{message.id}")
        created.append(message)
    return created


def notify_staff(
    session: Session,
    kind: NotifyKind | str,
    key: str,
    people: Iterable[Staff],
    *,
    text: str | None = None,
    card: Card | None = None,
) -> list[AppMessage]:
    """`notify` for staff records: each active person with a WeCom userid, through their own
    corp's app (a dealer group may run several corps, and a userid names someone else, or no
    one, in another corp). Returns the messages recorded now."""
    by_corp: dict[str, list[str]] = {}
    for person in people:
        if person.status == StaffStatus.ACTIVE and person.wecom_userid and person.corp_id:
            by_corp.setdefault(person.corp_id, []).append(person.wecom_userid)
    return [
        message
        for corp_id, userids in by_corp.items()
        for message in notify(session, corp_id, kind, key, userids, text=text, card=card)
    ]


def page_link(path: str) -> str:
    """The address of a workbench page for a card (`_distinct` adds which app sent it)."""
    return str(current_app.config.get("PUBLIC_BASE_URL") or "").rstrip("/") + path


def new_lead(
    session: Session, corp_id: str, lead_ref: str, advisor_userid: str, customer: str, source: str
) -> list[AppMessage]:
    return notify(
        session,
        corp_id,
        NotifyKind.NEW_LEAD,
        lead_ref,
        [advisor_userid],
        card=Card("新线索", f"客户「{customer}」来自{source}，请尽快跟进。", page_link(f"/workbench/leads/{lead_ref}")),
    )


def new_consultation(
    session: Session, corp_id: str, consult_ref: str, advisor_userid: str, customer: str, excerpt: str
) -> list[AppMessage]:
    return notify(
        session,
        corp_id,
        NotifyKind.NEW_CONSULTATION,
        consult_ref,
        [advisor_userid],
        card=Card("新咨询", f"客户「{customer}」：{excerpt[:120]}", page_link(f"/workbench/consult/{consult_ref}")),
    )


def lost_customer(
    session: Session, corp_id: str, alert_ref: str, recipients: list[str], customer: str, advisor: str
) -> list[AppMessage]:
    return notify(
        session,
        corp_id,
        NotifyKind.LOST_CUSTOMER,
        alert_ref,
        recipients,
        text=f"流失提醒：客户「{customer}」与顾问 {advisor} 的好友关系已解除。",
    )


def weak_item(session: Session, corp_id: str, item_ref: str, recipients: list[str], summary: str) -> list[AppMessage]:
    return notify(session, corp_id, NotifyKind.WEAK_ITEM, item_ref, recipients, text=f"待改进提醒：{summary}")


# ---------------------------------------------------------------------------------------------
# Per-recipient sliding window


class RecipientLimiter:
    """At most `limit` messages per recipient in any `window` seconds."""

    def __init__(self, redis_client: Any | None, limit: int, window: int) -> None:
        self.redis = redis_client
        self.limit = limit
        self.window = window

    @classmethod
    def from_app(cls) -> RecipientLimiter:
        config = current_app.config
        return cls(
            current_app.extensions.get("dealerloop.redis"),
            int(config.get("WECOM_NOTIFY_RATE_LIMIT") or DEFAULT_RATE_LIMIT),
            int(config.get("WECOM_NOTIFY_RATE_WINDOW") or DEFAULT_RATE_WINDOW),
        )

    @staticmethod
    def _key(corp_id: str, userid: str) -> str:
        return f"dealerloop:wecom:notify:{corp_id}:{userid}"

    def acquire(self, session: Session, corp_id: str, userids: list[str], token: str, now: datetime) -> float | None:
        """Reserve a slot for each recipient. None: go ahead; else seconds until a slot frees."""
        if self.redis is not None:
            from redis.exceptions import RedisError

            try:
                wait = self._acquire_redis(corp_id, userids, token, now.timestamp())
            except RedisError as exc:
                log.warning("notify rate limit: Redis unavailable (%s), counting in the database", type(exc).__name__)
            else:
                # What was sent while Redis was away is in the database, not in its window.
                wait = wait or self._database_wait(session, corp_id, userids, now)
                if wait is not None:
                    self.release(corp_id, userids, token)
                return wait
        return self._acquire_db(session, corp_id, userids, now)

    def _acquire_redis(self, corp_id: str, userids: list[str], token: str, now: float) -> float | None:
        reserved, wait = [], 0.0
        for userid in userids:
            key = self._key(corp_id, userid)
            pipe = self.redis.pipeline(transaction=True)
            pipe.zremrangebyscore(key, "-inf", now - self.window)
            pipe.zadd(key, {token: now})
            pipe.zcard(key)
            pipe.expire(key, self.window + 60)
            _, _, count, _ = pipe.execute()
            reserved.append(key)
            if count > self.limit:
                oldest = self.redis.zrange(key, 0, 0, withscores=True)
                wait = max(wait, (oldest[0][1] if oldest else now) + self.window - now, 1.0)
        if wait:
            for key in reserved:
                self.redis.zrem(key, token)
            return wait
        return None

    def _acquire_db(self, session: Session, corp_id: str, userids: list[str], now: datetime) -> float | None:
        # The recipients' staff rows, locked until the send is committed: two workers sending
        # to one advisor count one after the other (each send's recipient row is what the
        # other counts), so the limit holds without Redis too.
        staff = session.execute(
            select(Staff.wecom_userid)
            .where(Staff.corp_id == corp_id, Staff.wecom_userid.in_(userids))
            .order_by(Staff.id)
            .with_for_update()
        ).all()
        if len({u.casefold() for (u,) in staff}) < len({u.casefold() for u in userids}):
            # Someone not in our directory (an advisor WeCom knows and we do not yet): no row of
            # theirs to lock, so such sends of the corp queue on one row.
            from backend.wecom.service import lock_sync

            lock_sync(session, corp_id, "notify")
        return self._database_wait(session, corp_id, userids, now)

    def _database_wait(self, session: Session, corp_id: str, userids: list[str], now: datetime) -> float | None:
        """Seconds until a slot frees for every recipient, counting the sends recorded in the
        database; None when each has one now."""
        since = now - timedelta(seconds=self.window)
        wait = 0.0
        for userid in userids:
            count, oldest = session.execute(
                select(func.count(), func.min(AppMessageRecipient.sent_at)).where(
                    AppMessageRecipient.corp_id == corp_id,
                    AppMessageRecipient.userid == userid,
                    AppMessageRecipient.sent_at > since,
                )
            ).one()
            if count >= self.limit and oldest is not None:
                wait = max(wait, (oldest - since).total_seconds(), 1.0)
        return wait or None

    def release(self, corp_id: str, userids: list[str], token: str) -> None:
        if self.redis is None:
            return
        from redis.exceptions import RedisError

        try:
            for userid in userids:
                self.redis.zrem(self._key(corp_id, userid), token)
        except RedisError:
            pass  # the reservation expires with the window


# ---------------------------------------------------------------------------------------------
# Delivery (the job body)


def _max_attempts() -> int:
    return int(current_app.config.get("WECOM_NOTIFY_MAX_ATTEMPTS") or current_app.config["JOB_MAX_ATTEMPTS"])


def deliver(session: Session, message_id: int) -> str:
    from backend.wecom.service import app_key, gateway_for

    message = session.get(AppMessage, message_id, with_for_update=True)
    if message is None or message.status in FINAL:
        return "skipped"
    now = utcnow()
    corp_id = message.content.get("corp_id", "")
    try:
        gateway = gateway_for(corp_id)
    except LookupError as exc:  # no app of that corp in the settings: no try can succeed
        return fail(session, message, f"no WeCom app for corp {corp_id!r}: {exc}")
    left = session.scalars(
        select(Staff.wecom_userid).where(
            Staff.corp_id == corp_id, Staff.wecom_userid.in_(list(message.touser)), Staff.status != StaffStatus.ACTIVE
        )
    ).all()
    if left and len(left) >= len(message.touser):
        # Left since the message was recorded (a retry, or a deferral, came after): not sent.
        return fail(session, message, f"recipient left: {'|'.join(left)}")
    limiter = RecipientLimiter.from_app()
    token = f"m{message.id}"
    wait = limiter.acquire(session, corp_id, list(message.touser), token, now)
    if wait is not None:
        message.status = "deferred"
        enqueue(
            session,
            APP_MESSAGE_JOB,
            {"message_id": message.id},
            delay=timedelta(seconds=wait),  # no dedup key: the locked message decides what runs
        )
        log.info("app message %s deferred %.0fs by the per-recipient limit", message.id, wait)
        return "deferred"
    body = _distinct(message, app_key(gateway))
    try:
        result = gateway.post(
            "message/send",
            {
                "touser": "|".join(message.touser),
                "msgtype": message.msgtype,
                "agentid": int(gateway.agent_id) if str(gateway.agent_id).isdigit() else gateway.agent_id,
                message.msgtype: body,
                "enable_duplicate_check": 1,
                "duplicate_check_interval": DUPLICATE_CHECK_SECONDS,
            },
        )
    except UpstreamError as exc:
        limiter.release(corp_id, list(message.touser), token)
        message.attempts += 1
        # A refusal of the message itself (81013: no valid recipient, 40058: bad content) fails
        # at once: sending it again can only be refused again.
        if message.attempts >= _max_attempts() or not exc.transient:
            return fail(session, message, f"{exc} (after {message.attempts} tries)")
        message.last_error = str(exc)[:4000]
        message.status = "retrying"
        delay = RETRY_DELAYS[min(message.attempts - 1, len(RETRY_DELAYS) - 1)]
        enqueue(
            session,
            APP_MESSAGE_JOB,
            {"message_id": message.id},
            dedup_key=f"{APP_MESSAGE_JOB}:{message.id}:retry:{message.attempts}",
            delay=timedelta(seconds=delay),
        )
        return "retrying"
    except BaseException:
        limiter.release(corp_id, list(message.touser), token)  # the job is retried: not counted twice
        raise
    message.status = "sent"
    message.msgid = result.get("msgid")
    # Recipients WeCom could not reach (not in the app's visible range, no licence): named by
    # WeCom in lower case; they received nothing, so they get no recipient row (the rate limit
    # and the per-user list count what was delivered).
    unreached = {
        u.lower() for field in ("invaliduser", "unlicenseduser") for u in str(result.get(field) or "").split("|") if u
    }
    message.invalid_users = "|".join(sorted(unreached))[:255] or None
    if all(userid.lower() in unreached for userid in message.touser):
        # WeCom took the request and reached nobody (outside the app's range, no licence).
        return fail(session, message, f"no recipient reached: {message.invalid_users}")
    message.sent_at = now
    message.last_error = None
    for userid in dict.fromkeys(message.touser):
        if userid.lower() not in unreached:
            session.add(AppMessageRecipient(message_id=message.id, corp_id=corp_id, userid=userid, sent_at=now))
    session.flush()
    return "sent"


def _distinct(message: AppMessage, app: str) -> dict[str, Any]:
    """The message's body, marked with its id. WeCom's duplicate check compares whole requests:
    the retries of one message are the same request (dropped, as wanted), while two messages
    that happen to say the same thing (a customer lost, back and lost again within the window)
    differ by their id and both arrive. A text shows it as a reference number; a card carries
    it in its link.

    A card's link also names `app`, the key of the app sending it (`service.app_key`): the page
    it opens logs the staff member in with that app (its corp, its agent), the only one whose
    members they are. Added here, where the sending app is known, so every card carries it
    whoever built it, and it never names an app other than the one it came through."""
    body = {k: v for k, v in message.content.items() if k != "corp_id"}
    if message.msgtype == "text":
        body["content"] = f"{body.get('content', '')}\n编号 {message.id}"
    elif message.msgtype == "textcard" and body.get("url"):
        url = str(body["url"])
        body["url"] = f"{url}{'&' if '?' in url else '?'}{urlencode({'msg': message.id, 'app': app})}"
    return body


def fail(session: Session, message: AppMessage, error: str) -> str:
    """The message will not be sent: recorded as failed with why (the admin list shows it)."""
    message.status = "failed"
    message.last_error = error[:4000]
    session.flush()
    log.warning("app message %s failed: %s", message.id, error)
    return "failed"


def given_up(session: Session, error: str, message_id: int) -> None:
    """Its job's last try failed outside WeCom (the database failing under it): the message is
    failed, not left `pending` with no job to send it."""
    message = session.get(AppMessage, message_id, with_for_update=True)
    if message is not None and message.status not in FINAL:
        fail(session, message, f"delivery job gave up: {error}")


def list_messages(
    session: Session,
    *,
    status: str | None = None,
    kind: str | None = None,
    userid: str | None = None,
    corp_id: str | None = None,
    limit: int = 50,
    page: int = 1,
) -> list[AppMessage]:
    """Recorded app messages, newest first, `limit` a page. A recipient filter finds every
    message addressed to them, whatever became of it ("why did X not get it?": the failed one
    too), and those that reached them. Userids repeat across corps: without `corp_id` it finds
    every corp's namesake (each message names its corp), with it only that corp's member."""
    stmt = select(AppMessage)
    if status:
        stmt = stmt.where(AppMessage.status == status)
    if kind:
        stmt = stmt.where(AppMessage.kind == kind)
    if corp_id:
        # notify() records the sending corp in the content (its delivery reads it from there)
        stmt = stmt.where(AppMessage.content["corp_id"].as_string() == corp_id)
    if userid:
        reached = select(AppMessageRecipient.message_id).where(AppMessageRecipient.userid == userid)
        if corp_id:  # also the index's leading column
            reached = reached.where(AppMessageRecipient.corp_id == corp_id)
        addressed = cast(AppMessage.touser, String).contains(json.dumps(userid), autoescape=True)
        stmt = stmt.where(AppMessage.id.in_(reached) | addressed)
    return list(session.scalars(stmt.order_by(AppMessage.id.desc()).limit(limit).offset((page - 1) * limit)))
