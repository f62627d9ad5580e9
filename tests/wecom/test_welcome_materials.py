"""Materials (素材) of welcome templates: WeCom media ids last three days, so templates attach
pictures, videos and files by material id and dealerloop keeps a fresh media id per corp —
renewed by the hourly job, uploaded at send time when missing or about to expire, and forgotten
when WeCom refuses one (40007), the welcome then going out without it rather than not at all."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from backend.platform.audit import AuditLog
from backend.platform.db import utcnow
from backend.wecom import media
from backend.wecom.models import WeComChannel, WeComMaterial, WeComMediaUpload, WelcomeMessage, WelcomeTemplate
from tests.wecom.helpers import (
    MATERIALS,
    SAMPLE,
    add_store_channel,
    contact_xml,
    post_event,
    upload_material,
    upstream_calls,
)

ZHANG = "advisor.zhang"
TEMPLATES = "/api/workbench/v1/wecom/welcome-templates"
UPLOAD = "/cgi-bin/media/upload"
LINK = {"msgtype": "link", "link": {"title": "保养预约", "url": "https://e.x/b"}}
DAY = 86400


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    manager = make_staff(tree.stores[0], "store_manager", userid="mgr0")
    other = make_staff(tree.stores[1], "store_manager", userid="mgr1")
    admin = make_staff(tree.group, "group_admin", userid="admin0")
    advisor = make_staff(tree.stores[0], "sales_advisor", userid="adv1")
    return {
        "sb": sandbox_reset,
        "store": tree.stores[0],
        "other_store": tree.stores[1],
        "h": staff_headers(manager),
        "other_h": staff_headers(other),
        "admin_h": staff_headers(admin),
        "advisor_h": staff_headers(advisor),
    }


def material(client: Any, world: Any, kind: str = "image", **extra: Any) -> int:
    resp = upload_material(client, world["h"], kind, world["store"].id, **extra)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


def template(client: Any, world: Any, attachments: list, headers: Any = None) -> Any:
    return client.post(
        TEMPLATES,
        headers=headers or world["h"],
        json={
            "name": "欢迎",
            "store_id": world["store"].id,
            "text": "您好，我是{advisor_name}",
            "attachments": attachments,
        },
    )


def channel(client: Any, db_session: Any, world: Any, attachments: list, state: str = "mat-qr") -> int:
    resp = template(client, world, attachments)
    assert resp.status_code == 201, resp.get_json()
    add_store_channel(
        db_session, world["sb"], world["store"].id, state, [ZHANG], welcome_template_id=resp.get_json()["id"]
    )
    return resp.get_json()["id"]


_seq = iter(range(1, 10**6))


def welcome(client: Any, world: Any, state: str = "mat-qr") -> dict[str, Any]:
    """An add event with a WelcomeCode on the channel: the welcome WeCom received."""
    sb = world["sb"]
    ext = f"wmMaterial{next(_seq):04d}"
    sb.state.add_external_contact(ext, "车主", follow_userid=ZHANG, state=state, add_way=1)
    code = sb.state.issue_welcome_code(ZHANG, ext)
    xml = contact_xml(sb, "add_external_contact", ZHANG, ext, int(time.time()), State=state, WelcomeCode=code)
    assert post_event(client, sb, xml).data == b"success"
    sent = [m for m in sb.state.welcome_messages if m["welcome_code"] == code]
    assert len(sent) == 1, "the welcome was not sent"
    return sent[0]


def age_wecom_media(sb: Any, seconds: int) -> None:
    """Time passes for WeCom's media ids (the sandbox clock itself would make callbacks stale)."""
    with sb.state.lock:
        for item in sb.state.media.values():
            item["created_at"] -= seconds


def media_of(sb: Any, item: dict[str, Any]) -> dict[str, Any]:
    """What the sandbox knows of the media id an attachment carries."""
    body = item[item["msgtype"]]
    return sb.state.media[body.get("media_id") or body["pic_media_id"]]


# --- the materials API ---------------------------------------------------------------------


def test_materials_are_checked_against_wecoms_kinds_and_sizes(client: Any, db_session: Any, world: Any) -> None:
    resp = upload_material(client, world["h"], "image", world["store"].id, filename="门店.png")
    assert resp.status_code == 201
    body = resp.get_json()
    assert (body["kind"], body["name"], body["content_type"], body["size"]) == (
        "image",
        "门店.png",
        "image/png",
        len(SAMPLE["image"]),
    )
    assert "content" not in body
    stored = db_session.get(WeComMaterial, body["id"])
    assert stored.content == SAMPLE["image"] and stored.store_id == world["store"].id
    audit = db_session.scalars(select(AuditLog).where(AuditLog.action == "wecom.material_created")).one()
    assert audit.object_id == str(body["id"])

    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 32
    assert upload_material(client, world["h"], "image", world["store"].id, content=jpeg).get_json()["content_type"] == (
        "image/jpeg"
    )
    # Larger than the app's usual 1 MB request limit: the largest a material may be, stored whole
    # (PyMySQL sends it as a hex literal, twice its size, within MariaDB's 16 MB packet).
    largest = SAMPLE["image"] + b"\x07" * (media.MAX_SIZE["image"] - len(SAMPLE["image"]))
    resp = upload_material(client, world["h"], "image", world["store"].id, content=largest)
    assert resp.status_code == 201
    db_session.expire_all()
    assert db_session.get(WeComMaterial, resp.get_json()["id"]).content == largest

    refused = [
        (upload_material(client, world["h"], "image", world["store"].id, content=b"GIF89a" + b"\x00" * 16), 422),
        (upload_material(client, world["h"], "video", world["store"].id, content=SAMPLE["image"]), 422),
        (upload_material(client, world["h"], "file", world["store"].id, content=b"tiny"), 422),
        (upload_material(client, world["h"], "voice", world["store"].id, content=b"#!AMR\n" * 4), 422),
        (
            upload_material(
                client, world["h"], "file", world["store"].id, content=b"\x00" * (media.MAX_SIZE["file"] + 1)
            ),
            422,
        ),
        (upload_material(client, world["h"], "file", world["store"].id, content=b"\x00" * (8 * 1024 * 1024)), 413),
    ]
    codes = [(r.status_code, r.get_json()["code"]) for r, _ in refused]
    assert codes == [
        (422, "wecom.material_format"),
        (422, "wecom.material_format"),
        (422, "wecom.material_size"),
        (422, "request.invalid"),
        (422, "wecom.material_size"),
        (413, "request.too_large"),
    ]
    no_file = client.post(MATERIALS, headers=world["h"], data={"kind": "image"}, content_type="multipart/form-data")
    assert (no_file.status_code, no_file.get_json()["code"]) == (422, "request.invalid")
    assert db_session.scalar(select(WeComMaterial.id).order_by(WeComMaterial.id.desc()).limit(1)) is not None
    assert len(client.get(MATERIALS, headers=world["h"]).get_json()) == 3


def test_materials_follow_their_store(client: Any, world: Any) -> None:
    mine = material(client, world)
    # another store's manager neither sees it nor uses it
    assert client.get(f"{MATERIALS}/{mine}", headers=world["other_h"]).status_code == 404
    assert client.get(MATERIALS, headers=world["other_h"]).get_json() == []
    theirs = upload_material(client, world["h"], "image", world["other_store"].id)
    assert (theirs.status_code, theirs.get_json()["code"]) == (403, "wecom.store_forbidden")
    group_wide = upload_material(client, world["h"], "image", None)
    assert (group_wide.status_code, group_wide.get_json()["code"]) == (403, "wecom.store_forbidden")
    # an advisor cannot upload or delete
    assert upload_material(client, world["advisor_h"], "image", world["store"].id).status_code == 403
    assert client.delete(f"{MATERIALS}/{mine}", headers=world["advisor_h"]).status_code == 403
    # the group admin sees everything and keeps the group-wide materials, which every store
    # sees and attaches, but only the group deletes
    assert client.get(f"{MATERIALS}/{mine}", headers=world["admin_h"]).status_code == 200
    brand = upload_material(client, world["admin_h"], "image", None).get_json()["id"]
    assert [m["id"] for m in client.get(MATERIALS, headers=world["other_h"]).get_json()] == [brand]
    resp = client.delete(f"{MATERIALS}/{brand}", headers=world["other_h"])
    assert (resp.status_code, resp.get_json()["code"]) == (403, "wecom.store_forbidden")
    assert client.delete(f"{MATERIALS}/{brand}", headers=world["admin_h"]).status_code == 204


def test_a_store_must_be_a_store(client: Any, world: Any, tree: Any) -> None:
    """A group admin may choose any node; a region or an unknown id is not a store."""
    region = tree.regions[0].id
    for store_id in (region, 10**6):
        resp = upload_material(client, world["admin_h"], "image", store_id)
        assert (resp.status_code, resp.get_json()["code"]) == (422, "wecom.store_invalid")
        resp = client.post(TEMPLATES, headers=world["admin_h"], json={"name": "t", "store_id": store_id, "text": "hi"})
        assert (resp.status_code, resp.get_json()["code"]) == (422, "wecom.store_invalid")


def test_templates_attach_materials_of_their_store_and_kind(client: Any, world: Any) -> None:
    image, video = material(client, world), material(client, world, "video")
    other = upload_material(client, world["other_h"], "image", world["other_store"].id).get_json()["id"]
    group_wide = upload_material(client, world["admin_h"], "image", None).get_json()["id"]
    ok = template(
        client,
        world,
        [
            {"msgtype": "image", "image": {"material_id": image}},
            {"msgtype": "image", "image": {"material_id": group_wide}},
            {"msgtype": "video", "video": {"material_id": video}},
        ],
    )
    assert ok.status_code == 201

    def refused(attachments: list, headers: Any = None) -> tuple[int, str]:
        resp = template(client, world, attachments, headers)
        return resp.status_code, resp.get_json()["code"]

    assert refused([{"msgtype": "video", "video": {"material_id": image}}]) == (422, "wecom.material_kind")
    assert refused([{"msgtype": "image", "image": {"material_id": 10**6}}]) == (404, "wecom.material_not_found")
    assert refused([{"msgtype": "image", "image": {"material_id": other}}]) == (404, "wecom.material_not_found")
    # the group admin sees the other store's material, but it is not this store's
    assert refused([{"msgtype": "image", "image": {"material_id": other}}], world["admin_h"]) == (
        422,
        "wecom.material_store",
    )
    patched = client.patch(
        f"{TEMPLATES}/{ok.get_json()['id']}",
        headers=world["h"],
        json={"attachments": [{"msgtype": "file", "file": {"material_id": video}}]},
    )
    assert (patched.status_code, patched.get_json()["code"]) == (422, "wecom.material_kind")


def test_a_material_in_use_is_not_deleted(client: Any, db_session: Any, world: Any) -> None:
    image = material(client, world)
    template_id = template(client, world, [{"msgtype": "image", "image": {"material_id": image}}]).get_json()["id"]
    resp = client.delete(f"{MATERIALS}/{image}", headers=world["h"])
    assert (resp.status_code, resp.get_json()["code"]) == (409, "wecom.material_in_use")
    assert resp.get_json()["errors"] == {"templates": [template_id]}
    client.patch(f"{TEMPLATES}/{template_id}", headers=world["h"], json={"attachments": [LINK]})
    assert client.delete(f"{MATERIALS}/{image}", headers=world["h"]).status_code == 204
    assert db_session.get(WeComMaterial, image) is None
    assert client.get(f"{MATERIALS}/{image}", headers=world["h"]).status_code == 404


# --- media ids ------------------------------------------------------------------------------


def test_a_media_id_is_uploaded_once_and_renewed_before_it_expires(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sb"]
    image = material(client, world)
    channel(client, db_session, world, [{"msgtype": "image", "image": {"material_id": image}}, LINK])

    first = welcome(client, world)
    assert media_of(sb, first["attachments"][0])["type"] == "image" and first["attachments"][1] == LINK
    assert len(upstream_calls(sb, UPLOAD)) == 1
    second = welcome(client, world)
    assert second["attachments"] == first["attachments"]  # the same media id, no second upload
    assert len(upstream_calls(sb, UPLOAD)) == 1

    # Almost three days on (WeCom's clock and ours): the id would expire within the hour, so
    # the send uploads the picture again and uses the new id.
    age_wecom_media(sb, 3 * DAY - 1800)
    db_session.execute(update(WeComMediaUpload).values(uploaded_at=utcnow() - timedelta(seconds=3 * DAY - 1800)))
    db_session.commit()
    third = welcome(client, world)
    assert len(upstream_calls(sb, UPLOAD)) == 2
    assert third["attachments"][0] != first["attachments"][0]
    assert media_of(sb, third["attachments"][0])["created_at"] > media_of(sb, first["attachments"][0])["created_at"]
    db_session.expire_all()
    row = db_session.scalars(select(WeComMediaUpload)).one()  # one row per material and corp
    assert row.media_id == third["attachments"][0]["image"]["media_id"]
    assert [r.status for r in db_session.scalars(select(WelcomeMessage))] == ["sent"] * 3


def test_the_hourly_refresh_renews_what_channels_use(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sb"]
    used, card, unused = material(client, world), material(client, world), material(client, world, "file")
    channel(
        client,
        db_session,
        world,
        [
            {"msgtype": "image", "image": {"material_id": used}},
            {
                "msgtype": "miniprogram",
                "miniprogram": {"title": "t", "appid": "wx1", "page": "/p", "pic_material_id": card},
            },
        ],
    )
    template(client, world, [{"msgtype": "file", "file": {"material_id": unused}}])  # on no channel

    def run() -> int:
        with client.application.app_context():
            renewed = media.refresh(db_session)
        db_session.commit()
        return renewed

    assert run() == 2
    uploads = {r.material_id: r.media_id for r in db_session.scalars(select(WeComMediaUpload))}
    assert sorted(uploads) == sorted([used, card])
    assert run() == 0  # fresh ids are left alone

    # Two days on, the refresh renews one; WeCom refuses the other upload (left to the next run).
    db_session.execute(
        update(WeComMediaUpload).values(uploaded_at=utcnow() - media.REFRESH_AFTER - timedelta(minutes=1))
    )
    db_session.commit()
    sb.state.set_fault("errcode", errcode=45009, service="wecom", path=UPLOAD, count=1)
    assert run() == 1
    db_session.expire_all()
    now = {r.material_id: r.media_id for r in db_session.scalars(select(WeComMediaUpload))}
    assert sum(now[m] != uploads[m] for m in uploads) == 1
    assert run() == 1
    db_session.expire_all()
    assert all(r.media_id != uploads[r.material_id] for r in db_session.scalars(select(WeComMediaUpload)))

    # what a welcome then sends is the refreshed ids, without uploading at send time
    calls = len(upstream_calls(sb, UPLOAD))
    sent = welcome(client, world)
    assert len(upstream_calls(sb, UPLOAD)) == calls
    assert (
        sent["attachments"][0]["image"]["media_id"]
        == db_session.scalars(select(WeComMediaUpload.media_id).where(WeComMediaUpload.material_id == used)).one()
    )


def test_a_refused_media_id_costs_the_picture_not_the_welcome(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sb"]
    image = material(client, world)
    channel(client, db_session, world, [{"msgtype": "image", "image": {"material_id": image}}, LINK])
    welcome(client, world)
    # WeCom's media ids expired earlier than our record says (three days on its clock only)
    age_wecom_media(sb, 3 * DAY + 60)
    refused = welcome(client, world)
    assert refused["attachments"] == [LINK] and refused["text"]["content"] == "您好，我是张顾问"
    db_session.expire_all()
    last = db_session.scalars(select(WelcomeMessage).order_by(WelcomeMessage.id.desc()).limit(1)).one()
    assert (last.status, last.payload["attachments"]) == ("sent", [LINK])  # what was really sent
    assert db_session.scalars(select(WeComMediaUpload)).all() == []  # forgotten
    # the next welcome uploads the picture again and carries it
    again = welcome(client, world)
    assert media_of(sb, again["attachments"][0])["type"] == "image"
    assert len(upstream_calls(sb, UPLOAD)) == 2


def test_an_upload_failing_at_send_time_costs_that_attachment_only(client: Any, db_session: Any, world: Any) -> None:
    sb = world["sb"]
    ready, fresh = material(client, world), material(client, world)
    channel(client, db_session, world, [{"msgtype": "image", "image": {"material_id": ready}}, LINK])
    first = welcome(client, world)
    # a second picture joins the template; WeCom fails its upload once
    template_id = db_session.scalars(select(WeComChannel.welcome_template_id)).one()
    client.patch(
        f"{TEMPLATES}/{template_id}",
        headers=world["h"],
        json={
            "attachments": [
                {"msgtype": "image", "image": {"material_id": ready}},
                {"msgtype": "image", "image": {"material_id": fresh}},
                LINK,
            ]
        },
    )
    sb.state.set_fault("down", service="wecom", path=UPLOAD, count=1)
    assert welcome(client, world)["attachments"] == [first["attachments"][0], LINK]
    assert [r.material_id for r in db_session.scalars(select(WeComMediaUpload))] == [ready]
    attachments = welcome(client, world)["attachments"]
    assert attachments[0] == first["attachments"][0] and media_of(sb, attachments[1])["type"] == "image"


def test_a_media_id_written_into_a_template_before_materials_is_left_out(
    client: Any, db_session: Any, world: Any
) -> None:
    """Templates saved before materials existed may hold media ids; long expired, they would
    make WeCom refuse every welcome."""
    template_id = channel(client, db_session, world, [LINK])
    db_session.execute(
        update(WelcomeTemplate)
        .where(WelcomeTemplate.id == template_id)
        .values(attachments=[{"msgtype": "image", "image": {"media_id": "OLD_MEDIA_ID"}}, LINK])
    )
    db_session.commit()
    sent = welcome(client, world)
    assert sent["attachments"] == [LINK] and sent["text"]["content"] == "您好，我是张顾问"
    assert len(upstream_calls(world["sb"], "/cgi-bin/externalcontact/send_welcome_msg")) == 1


def test_staff_without_a_role_see_no_materials(client: Any, world: Any, make_staff: Any, staff_headers: Any) -> None:
    upload_material(client, world["admin_h"], "image", None)
    material(client, world)
    nobody = staff_headers(make_staff(world["store"]))
    assert client.get(MATERIALS, headers=nobody).get_json() == []
    assert client.get(MATERIALS, headers=world["advisor_h"]).get_json() == []
