"""Materials (素材) for welcome messages, and their WeCom media ids.

A picture, video or file in a WeCom message travels as a media id from `media/upload`, and that
id is valid for three days. A template that stored one broke three days later: WeCom refuses
the whole welcome (40007), text included. So templates refer to materials by their id here
(`material_id`, and `pic_material_id` for a mini-program card's picture), the file is kept in
the database, and its media id per corp (a corp's apps share media ids) is renewed:

- by the hourly `wecom.refresh_media` job, for every material a channel's template uses, once
  its media id is older than REFRESH_AFTER — so a welcome normally finds one ready;
- at send time (`media_ids`), for one that is missing or would expire within SEND_MARGIN: an
  upload then, before the message goes out;
- after WeCom refused a media id anyway (40007: `forget`), the next send uploads again.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, undefer

from backend.platform.db import db, utcnow
from backend.platform.ports import UpstreamError, WeComGateway
from backend.platform.upsert import upsert
from backend.wecom.models import WeComChannel, WeComMaterial, WeComMediaUpload, WelcomeTemplate

log = logging.getLogger("dealerloop.wecom.media")

REFRESH_JOB = "wecom.refresh_media"
MEDIA_TTL = timedelta(days=3)  # WeCom: a temporary media id is valid for three days
REFRESH_AFTER = timedelta(days=2)  # the hourly refresh uploads again once an id is this old
SEND_MARGIN = timedelta(hours=1)  # at send time, an id that expires sooner than this is renewed
MB = 1024 * 1024
# WeCom takes images and videos up to 10 MB and files up to 20 MB. Here a file is kept in one
# database row, and PyMySQL sends bytes as a hex literal (twice their size) in a statement that
# MariaDB's default max_allowed_packet limits to 16 MB: 7 MB for every kind.
MAX_SIZE = {"image": 7 * MB, "video": 7 * MB, "file": 7 * MB}
MIN_SIZE = 5  # WeCom refuses anything smaller
FORMATS = {"image": "JPG or PNG", "video": "MP4", "file": "any format"}


class Ref(NamedTuple):
    field: str  # where a template's attachment names its material
    kind: str  # the kind that material must be
    media_field: str  # the field of WeCom's attachment that carries the media id instead


REFERENCES = {
    "image": Ref("material_id", "image", "media_id"),
    "video": Ref("material_id", "video", "media_id"),
    "file": Ref("material_id", "file", "media_id"),
    "miniprogram": Ref("pic_material_id", "image", "pic_media_id"),
}


def sniff(kind: str, content: bytes) -> str | None:
    """The content type the bytes really are, for kinds WeCom restricts (images: JPG and PNG;
    videos: MP4); None when they are not. Files may be anything."""
    if kind == "image":
        if content.startswith(b"\xff\xd8\xff"):
            return "image/jpeg"
        if content.startswith(b"\x89PNG\r\n\x1a\n"):
            return "image/png"
        return None
    if kind == "video":
        return "video/mp4" if content[4:8] == b"ftyp" else None
    return "application/octet-stream"


def _media_part(item: Any) -> tuple[Ref, dict[str, Any]] | None:
    """(its REFERENCES entry, its body) for an attachment of a kind that carries media."""
    ref = REFERENCES.get(item.get("msgtype")) if isinstance(item, dict) else None
    body = item.get(item["msgtype"]) if ref else None
    return (ref, body) if ref and isinstance(body, dict) else None


def references(attachments: Iterable[Any]) -> list[tuple[int, str]]:
    """(material id, the kind it must be) of every attachment that names a material."""
    found = []
    for item in attachments or []:
        part = _media_part(item)
        if part is not None and isinstance(part[1].get(part[0].field), int):
            ref, body = part
            found.append((body[ref.field], ref.kind))
    return found


def upload(gateway: WeComGateway, material: WeComMaterial) -> str:
    """Upload the material to the gateway's corp and keep its new media id: an upsert (two
    workers renewing the same material leave one row, the later id) committed on its own at
    once, so that no transaction holds the row while uploads (up to a minute each) go on, and a
    welcome batch never waits for the hourly refresh. If that write fails, the id is still good
    for the caller's messages; the next send uploads again."""
    result = gateway.upload_media(material.kind, material.name, material.content)
    try:
        uploaded_at = datetime.fromtimestamp(int(result["created_at"]), UTC)
    except (KeyError, TypeError, ValueError):
        uploaded_at = utcnow()
    media_id = str(result["media_id"])
    values = {"material_id": material.id, "corp_id": gateway.corp_id, "media_id": media_id, "uploaded_at": uploaded_at}
    try:
        with db.autocommit() as conn:
            upsert(
                conn,
                WeComMediaUpload,
                values,
                ["material_id", "corp_id"],
                lambda new: [("media_id", new.media_id), ("uploaded_at", new.uploaded_at)],
            )
    except Exception:  # noqa: BLE001 - the media id is valid either way
        log.warning("media id of material %s in corp %s not recorded", material.id, gateway.corp_id, exc_info=True)
    return media_id


def media_ids(
    session: Session, gateway: WeComGateway, material_ids: Iterable[int], now: datetime | None = None
) -> dict[int, str]:
    """A media id for each material in the gateway's corp that stays valid for SEND_MARGIN at
    least, uploading those without one. A material whose upload fails is left out (logged):
    its attachment goes missing, not the others."""
    wanted = set(material_ids)
    if not wanted:
        return {}
    current = _uploaded_since(session, gateway.corp_id, wanted, (now or utcnow()) - (MEDIA_TTL - SEND_MARGIN))
    to_upload = wanted - set(current)
    # On the send path (a code lives 20 s): the files' bytes in the same query, not one each.
    missing = (
        session.scalars(
            select(WeComMaterial).options(undefer(WeComMaterial.content)).where(WeComMaterial.id.in_(to_upload))
        ).all()
        if to_upload
        else []
    )
    for material in missing:
        try:
            current[material.id] = upload(gateway, material)
        except UpstreamError:
            log.warning("material %s not uploaded to corp %s", material.id, gateway.corp_id, exc_info=True)
    return current


def _uploaded_since(session: Session, corp_id: str, material_ids: set[int], after: datetime) -> dict[int, str]:
    """The media ids of these materials in the corp uploaded after `after`, by material."""
    rows = session.execute(
        select(WeComMediaUpload.material_id, WeComMediaUpload.media_id).where(
            WeComMediaUpload.corp_id == corp_id,
            WeComMediaUpload.material_id.in_(material_ids),
            WeComMediaUpload.uploaded_at > after,
        )
    )
    return {material_id: media_id for material_id, media_id in rows}


def with_media(attachments: list, media: dict[int, str]) -> list:
    """The attachments as WeCom takes them: each material reference replaced by its media id.
    One without a media id (its upload failed) is left out, and so is a media id written into
    a template before materials existed: expired by now, it would make WeCom refuse the whole
    welcome."""
    out = []
    for item in attachments:
        part = _media_part(item)
        if part is None or part[0].field not in part[1]:
            if not carries_media(item):
                out.append(item)
            continue
        ref, body = part
        media_id = media.get(body[ref.field])
        if media_id is None:
            continue
        resolved = copy.deepcopy(item)
        resolved[item["msgtype"]].pop(ref.field)
        resolved[item["msgtype"]][ref.media_field] = media_id
        out.append(resolved)
    return out


def carries_media(item: Any) -> bool:
    """An attachment as sent that holds a media id (a picture by URL or a link does not)."""
    part = _media_part(item)
    return part is not None and part[0].media_field in part[1]


def forget(session: Session, corp_id: str, material_ids: Iterable[int]) -> None:
    """WeCom refused these media ids (40007): the next send uploads the materials again."""
    ids = set(material_ids)
    if ids:
        session.execute(
            delete(WeComMediaUpload).where(WeComMediaUpload.corp_id == corp_id, WeComMediaUpload.material_id.in_(ids))
        )


def refresh(session: Session, now: datetime | None = None) -> int:
    """Upload again, in each corp, every material that a channel's welcome template uses and
    whose media id is missing or older than REFRESH_AFTER. One failed upload is logged and left
    to the next run (or to the send, which uploads a missing id itself). Returns the uploads."""
    from backend.wecom.service import gateway_for

    in_use: dict[str, set[int]] = {}
    for corp_id, attachments in session.execute(
        select(WeComChannel.corp_id, WelcomeTemplate.attachments)
        .join(WelcomeTemplate, WelcomeTemplate.id == WeComChannel.welcome_template_id)
        .where(WeComChannel.active.is_(True))
    ):
        in_use.setdefault(corp_id, set()).update(m for m, _ in references(attachments))
    renewed = 0
    stale_before = (now or utcnow()) - REFRESH_AFTER
    for corp_id, material_ids in sorted(in_use.items()):
        try:
            gateway = gateway_for(corp_id)
        except LookupError:
            log.warning("materials of corp %s not renewed: no WeCom app configured for it", corp_id)
            continue
        fresh = set(_uploaded_since(session, corp_id, material_ids, stale_before))
        stale = session.scalars(
            select(WeComMaterial).where(WeComMaterial.id.in_(material_ids - fresh)).order_by(WeComMaterial.id)
        ).all()
        for material in stale:
            try:
                upload(gateway, material)
                renewed += 1
            except UpstreamError:
                log.warning(
                    "material %s not renewed in corp %s; the next run tries again", material.id, corp_id, exc_info=True
                )
    return renewed
