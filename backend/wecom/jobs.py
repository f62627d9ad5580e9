"""Background jobs of the wecom feature (registered with backend.platform.jobs.job)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from backend.platform.intake import register_intake
from backend.platform.jobs import enqueue, job, periodic
from backend.wecom import admin, handlers, media, notify, service, welcome
from backend.wecom.events import PROCESS_JOB, REBALANCE_JOB, WELCOME_JOB, admit
from backend.wecom.ops_jobs import DAY, for_each_corp

TAG_SYNC_JOB = "wecom.sync_tags"


@job(PROCESS_JOB, queue="default", on_give_up=handlers.dead_letter)
def process_event(session: Session, raw_event_id: int) -> None:
    handlers.process_raw_event(session, raw_event_id)


def send_welcomes(session: Session, batch: list[dict[str, Any]]) -> list[Exception | None]:
    """A pump's admitted welcomes together (backend.platform.jobs.execute_batch)."""
    return welcome.send_welcomes(session, [int(args["raw_event_id"]) for args in batch])


@job(WELCOME_JOB, queue="high", batch=send_welcomes)
def send_welcome(session: Session, raw_event_id: int) -> None:
    welcome.send_welcome(session, raw_event_id)


@job(notify.APP_MESSAGE_JOB, queue="high", on_give_up=notify.given_up)
def send_app_message(session: Session, message_id: int) -> None:
    service.deliver_app_message(session, message_id)


@job(TAG_SYNC_JOB, queue="low")
def sync_tags(session: Session, slot: int | None = None, corp_id: str | None = None) -> None:
    """A corp's tag libraries (corporate and rule-group tags) into wecom_tag. Tag callbacks keep
    them current, but one lost (or a change made while the callback URL was down) would leave
    them stale: the nightly run re-reads every corp's libraries, one job per corp."""
    corp = for_each_corp(session, TAG_SYNC_JOB, slot, corp_id)
    if corp:
        service.sync_tag_libraries(session, corp, service.gateway_for(corp))


periodic(TAG_SYNC_JOB, DAY)


@job(admin.CONTACT_WAY_SWEEP_JOB, queue="low")
def sweep_contact_ways(session: Session, corp_id: str, state: str, since: int) -> None:
    admin.sweep_contact_ways(session, corp_id, state, since)


@job(REBALANCE_JOB, queue="high")
def rebalance_channel(session: Session, channel_id: int, resend: bool = False) -> None:
    """An add on a capped channel: move the contact way to the advisors still under the cap.
    `resend`: after an update whose answer was lost, set the whole contact way again."""
    service.rebalance_channel(session, channel_id, resend=resend)


@job("wecom.rebalance_channels", queue="low")
def rebalance_channels(session: Session, slot: int = 0) -> None:
    """Every capped channel back to its advisors when a new (China) day has reset the counts,
    and any channel off an advisor who has left: one job per channel, so that a channel WeCom
    refuses (its contact way deleted there) is retried on its own and holds up no other."""
    for channel_id in service.channels_to_rebalance(session):
        enqueue(session, REBALANCE_JOB, {"channel_id": channel_id}, dedup_key=f"{REBALANCE_JOB}:{slot}:{channel_id}")


periodic("wecom.rebalance_channels", 600)


@job(media.REFRESH_JOB, queue="low")
def refresh_media(session: Session, slot: int = 0) -> None:
    """Renew the media ids of the materials that channels' welcome templates attach."""
    media.refresh(session)


periodic(media.REFRESH_JOB, 3600)

WECOM_INTAKE = register_intake("wecom", admit)
