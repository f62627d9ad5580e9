"""Welcome messages of a channel: the fast path (a worker's pump sends the welcomes of what it
admitted at once, in one batch, before the events' processing; the job on the high queue is the
fallback), templates with variables and up to 9 attachments in the `attachments` format, and the
latency recorded on the welcome row."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

from backend.platform.jobs import OutboxJob
from backend.wecom.models import WeComRawEvent, WelcomeMessage
from tests.wecom.helpers import add_store_channel, contact_xml, post_event, run_due_jobs, upload_material

ZHANG = "advisor.zhang"
CUSTOMER = "wmDemoCustomer001"
TEMPLATES = "/api/workbench/v1/wecom/welcome-templates"


def nine(materials: dict[str, int]) -> list[dict[str, Any]]:
    """Nine attachments of every kind; pictures, videos and files are materials."""
    return [
        {"msgtype": "image", "image": {"material_id": materials["image"]}},
        {"msgtype": "link", "link": {"title": "保养预约", "picurl": "https://e.x/p.png", "url": "https://e.x/b"}},
        {
            "msgtype": "miniprogram",
            "miniprogram": {"title": "车主", "pic_material_id": materials["image"], "appid": "wx1", "page": "/p"},
        },
        {"msgtype": "file", "file": {"material_id": materials["file"]}},
        {"msgtype": "video", "video": {"material_id": materials["video"]}},
        *({"msgtype": "link", "link": {"title": f"车型{i}", "url": f"https://e.x/{i}"}} for i in range(4)),
    ]


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    zhang = make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    manager = make_staff(tree.stores[0], "store_manager", userid="mgr0")
    return {"sb": sandbox_reset, "tree": tree, "zhang": zhang, "h": staff_headers(manager)}


@pytest.fixture
def materials(client: Any, world: Any) -> dict[str, int]:
    ids = {}
    for kind in ("image", "video", "file"):
        resp = upload_material(client, world["h"], kind, world["tree"].stores[0].id)
        assert resp.status_code == 201, resp.get_json()
        ids[kind] = resp.get_json()["id"]
    return ids


def channel_with_template(client: Any, db_session: Any, world: Any, attachments: list[dict]) -> int:
    store = world["tree"].stores[0]
    resp = client.post(
        TEMPLATES,
        headers=world["h"],
        json={
            "name": "门店欢迎",
            "store_id": store.id,
            "text": "{customer_name}您好！我是{store_name}的{advisor_name}，{unknown}保持原样",
            "attachments": attachments,
        },
    )
    assert resp.status_code == 201, resp.get_json()
    add_store_channel(
        db_session, world["sb"], store.id, "welcome-qr", [ZHANG], welcome_template_id=resp.get_json()["id"]
    )
    return resp.get_json()["id"]


def add_with_code(client: Any, sb: Any) -> Any:
    code = sb.state.issue_welcome_code(ZHANG, CUSTOMER)
    xml = contact_xml(
        sb, "add_external_contact", ZHANG, CUSTOMER, int(time.time()), State="welcome-qr", WelcomeCode=code
    )
    return post_event(client, sb, xml), code


def admitted_add(client: Any, db_session: Any, world: Any) -> tuple[str, Any]:
    """An add event on the template's channel, acknowledged and admitted (its jobs created, none
    run): (its WelcomeCode, the admission)."""
    from backend.platform import intake

    channel_with_template(client, db_session, world, [])
    resp, code = add_with_code(client, world["sb"])
    assert resp.data == b"success"
    db_session.close()  # the app contexts below remove the test's session when they pop
    return code, intake.admit_now(client.application, "wecom", None)


def make_due(app: Any, job_id: int) -> None:
    """The job's delay is up: the relayer's next pass hands it over."""
    from datetime import timedelta

    from sqlalchemy import update

    from backend.platform.db import db, utcnow

    with app.app_context():
        session = db.session_factory()
        session.execute(
            update(OutboxJob).where(OutboxJob.id == job_id).values(run_after=utcnow() - timedelta(seconds=1))
        )
        session.commit()
        session.close()


def batch_inside_a_slow_send(app: Any, sb: Any, welcome_job: int) -> tuple[threading.Thread, list[int]]:
    """WeCom takes a second over send_welcome_msg; the welcome's batch runs in a thread, and this
    returns once the batch is inside that call, holding the job's row: (the thread, where its
    `execute_batch` result lands)."""
    from backend.platform import jobs

    sb.state.set_fault("slow", service="wecom", path="/cgi-bin/externalcontact/send_welcome_msg", seconds=1.0)
    done: list[int] = []
    sender = threading.Thread(target=lambda: done.append(jobs.execute_batch([welcome_job], app=app)))
    sender.start()
    deadline = time.monotonic() + 5
    while not sb.hits("/cgi-bin/externalcontact/send_welcome_msg", "wecom") and time.monotonic() < deadline:
        time.sleep(0.02)
    return sender, done


def test_welcome_with_variables_and_nine_attachments_on_the_fast_path(
    client: Any, db_session: Any, world: Any, materials: dict[str, int]
) -> None:
    sb = world["sb"]
    template_id = channel_with_template(client, db_session, world, nine(materials))
    resp, code = add_with_code(client, sb)
    assert resp.data == b"success"

    sent = sb.state.welcome_messages
    assert len(sent) == 1
    assert sent[0]["welcome_code"] == code
    assert sent[0]["text"]["content"] == "陈先生您好！我是门店0-0的张顾问，{unknown}保持原样"
    # Each material went to WeCom once (the picture serves the image and the card) and is sent
    # by the media id WeCom gave it; the links as written.
    uploads = {sb.state.media[m]["type"]: m for m in sb.state.media}
    assert sorted(uploads) == ["file", "image", "video"]
    expected = nine(materials)
    expected[0]["image"] = {"media_id": uploads["image"]}
    expected[2]["miniprogram"] = {"title": "车主", "appid": "wx1", "page": "/p", "pic_media_id": uploads["image"]}
    expected[3]["file"] = {"media_id": uploads["file"]}
    expected[4]["video"] = {"media_id": uploads["video"]}
    assert sent[0]["attachments"] == expected
    row = db_session.scalars(select(WelcomeMessage)).one()
    assert (row.status, row.template_id, row.errcode) == ("sent", template_id, None)
    assert row.payload["attachments"] == expected and "welcome_code" not in row.payload
    # callback received -> WeCom answered send_welcome_msg, well inside the 20 s window
    assert row.latency_ms is not None and 0 <= row.latency_ms < 20000
    jobs = db_session.scalars(select(OutboxJob).order_by(OutboxJob.id)).all()
    welcome, process = jobs[0], jobs[1]
    assert (welcome.name, welcome.queue, welcome.status) == ("wecom.send_welcome", "high", "done")
    assert (process.name, process.queue) == ("wecom.process_event", "default")


def test_welcome_is_sent_even_when_the_events_processing_fails(
    client: Any, db_session: Any, world: Any, materials: dict[str, int]
) -> None:
    sb = world["sb"]
    channel_with_template(client, db_session, world, nine(materials)[:1])
    sb.state.set_fault("down", service="wecom", path="/cgi-bin/externalcontact/get", count=2)
    resp, _ = add_with_code(client, sb)
    assert resp.data == b"success"
    # the welcome did not wait for the customer's details: no name, but advisor and store
    assert [m["text"]["content"] for m in sb.state.welcome_messages] == ["您好！我是门店0-0的张顾问，{unknown}保持原样"]
    raw = db_session.scalars(select(WeComRawEvent)).one()
    assert raw.status == "retrying"  # the processing failed on its own and is retried
    run_due_jobs(client.application)
    db_session.expire_all()
    assert raw.status == "processed"
    assert len(sb.state.welcome_messages) == 1  # retries of the processing do not welcome again


@pytest.mark.parametrize(
    ("age", "slow", "outcome"),
    [
        (25, False, "expired"),  # the retry comes after the code's 20 s: not tried at all
        (19, True, "failed"),  # the retry starts in time, WeCom answers only after the 20 s
    ],
)
def test_a_welcome_whose_code_died_before_it_went_out_is_recorded_not_retried(
    client: Any, db_session: Any, world: Any, age: int, slow: bool, outcome: str
) -> None:
    """A WelcomeCode lives 20 s. Once it is dead no try can succeed (WeCom could only answer
    41051, which would read as "sent by someone else"), so the welcome is recorded as what it
    is, the job ends, and no send is wasted on a dead code."""
    from datetime import timedelta

    sb = world["sb"]
    channel_with_template(client, db_session, world, [])
    sb.state.set_fault("down", service="wecom", path="/cgi-bin/externalcontact/send_welcome_msg", count=1)
    resp, _ = add_with_code(client, sb)
    assert resp.data == b"success"
    welcome_job = db_session.scalars(select(OutboxJob).where(OutboxJob.name == "wecom.send_welcome")).one()
    assert welcome_job.status == "pending" and welcome_job.last_error  # the first try failed: retried
    assert db_session.scalars(select(WelcomeMessage)).all() == []
    # when the retry's delay is up, this long after the callback
    raw = db_session.scalars(select(WeComRawEvent)).one()
    raw.received_at -= timedelta(seconds=age)
    db_session.commit()
    if slow:  # longer than the client's timeout (2 s in tests)
        sb.state.set_fault("slow", seconds=3, service="wecom", path="/cgi-bin/externalcontact/send_welcome_msg")
    run_due_jobs(client.application)
    db_session.expire_all()
    sends = sb.hits("/cgi-bin/externalcontact/send_welcome_msg", "wecom")
    assert sends == (2 if slow else 1)
    row = db_session.scalars(select(WelcomeMessage)).one()
    assert (row.status, row.latency_ms) == (outcome, None)
    if slow:
        assert row.payload["error"].startswith("UpstreamError") and "timeout" in row.payload["error"]
    assert db_session.get(OutboxJob, welcome_job.id).status == "done"
    assert sb.state.welcome_messages == []


@pytest.mark.parametrize(
    "attachments",
    [
        nine({"image": 1, "video": 2, "file": 3}) + [{"msgtype": "image", "image": {"material_id": 1}}],  # at most 9
        [{"msgtype": "voice", "voice": {"material_id": 1}}],
        [{"msgtype": "image"}],
        [{"msgtype": "image", "image": {}}],
        [{"msgtype": "link", "image": {"material_id": 1}}],
        [{"msgtype": "link", "link": {"title": "no url"}}],
        [{"msgtype": "image", "image": {"material_id": 1, "pic_url": "https://e.x/p.png"}}],
        [{"msgtype": "image", "image": {"pic_url": "javascript:alert(1)"}}],
        [{"msgtype": "image", "image": {"material_id": "1"}}],
        [{"msgtype": "file", "file": {}}],
        [{"msgtype": "miniprogram", "miniprogram": {"title": "t", "appid": "wx1", "page": "/p"}}],
        # a WeCom media id expires after three days: a template never stores one
        [{"msgtype": "image", "image": {"media_id": "MEDIA_ID_1"}}],
        [{"msgtype": "miniprogram", "miniprogram": {"title": "t", "appid": "a", "page": "/p", "pic_media_id": "M"}}],
        # what WeCom would refuse at send time, and with it the whole welcome
        [{"msgtype": "link", "link": {"title": {"a": 1}, "url": "https://e.x"}}],
        [{"msgtype": "link", "link": {"title": "t", "url": "javascript:x"}}],
        [{"msgtype": "link", "link": {"title": "长" * 43, "url": "https://e.x"}}],  # 129 bytes
        [{"msgtype": "link", "link": {"title": "t", "url": "https://e.x", "media": "x"}}],
        [{"msgtype": "miniprogram", "miniprogram": {"title": "t", "appid": [1], "page": True, "pic_material_id": 1}}],
        [{"msgtype": "image", "image": {"material_id": True}}],
        [{"msgtype": "image", "image": {"material_id": 2**40}}],
        [{"msgtype": "image", "image": {"material_id": 1}, "link": {}}],
    ],
)
def test_bad_templates_are_refused(client: Any, world: Any, attachments: list) -> None:
    resp = client.post(
        TEMPLATES,
        headers=world["h"],
        json={"name": "x", "store_id": world["tree"].stores[0].id, "text": "hi", "attachments": attachments},
    )
    assert (resp.status_code, resp.get_json()["code"]) == (422, "request.invalid")
    assert resp.get_json()["errors"]["json"]["attachments"]


def test_blank_optional_attachment_fields_are_accepted(client: Any, world: Any) -> None:
    link = {"msgtype": "link", "link": {"title": "保养预约", "url": "https://e.x/b", "picurl": "", "desc": ""}}
    resp = client.post(
        TEMPLATES,
        headers=world["h"],
        json={"name": "x", "store_id": world["tree"].stores[0].id, "text": "hi", "attachments": [link]},
    )
    assert resp.status_code == 201, resp.get_json()


def test_template_text_is_held_to_wecoms_4000_bytes(client: Any, world: Any) -> None:
    store_id = world["tree"].stores[0].id
    fits = client.post(TEMPLATES, headers=world["h"], json={"name": "x", "store_id": store_id, "text": "您" * 1333})
    assert fits.status_code == 201
    resp = client.post(TEMPLATES, headers=world["h"], json={"name": "x", "store_id": store_id, "text": "您" * 1334})
    assert (resp.status_code, resp.get_json()["errors"]["json"]["text"]) == (
        422,
        ["at most 4000 bytes (a Chinese character takes 3)"],
    )
    # names can make a template that fits grow past it: the message is cut, not refused by WeCom
    from backend.wecom.welcome import render

    sent = render("您" * 1333 + "{customer_name}", {"customer_name": "陈先生"})
    assert len(sent.encode()) <= 4000 and sent.startswith("您" * 1333)


@pytest.mark.redis
def test_a_pump_holds_the_processing_back_until_the_burst_is_over(
    client: Any, db_session: Any, world: Any, redis_dispatcher: Any, monkeypatch: Any
) -> None:
    """While a pump keeps finding events, it sends their welcomes and keeps their processing out
    of RQ (it would take the CPU the next welcomes need); the first iteration that finds nothing
    hands all of it over, and RQ applies every event."""
    from rq import Queue, SimpleWorker
    from rq.serializers import JSONSerializer

    from backend.platform import intake, jobs

    app = client.application
    sb = world["sb"]
    channel_with_template(client, db_session, world, [])

    def add(ext: str) -> None:
        sb.state.add_external_contact(ext, "车主", follow_userid=ZHANG, state="welcome-qr", add_way=1)
        code = sb.state.issue_welcome_code(ZHANG, ext)
        xml = contact_xml(
            sb, "add_external_contact", ZHANG, ext, int(time.time()), State="welcome-qr", WelcomeCode=code
        )
        assert post_event(client, sb, xml).data == b"success"
        db_session.close()  # the app contexts below remove the test's session when they pop

    def processing() -> list[str]:
        db_session.expire_all()
        statuses = db_session.scalars(select(OutboxJob.status).where(OutboxJob.name == "wecom.process_event"))
        return sorted(statuses)

    default_queue = Queue("default", connection=redis_dispatcher, serializer=JSONSerializer)
    held: list[int] = []
    add("wmHold001")
    assert intake.pump_once(app, "wecom", held) == 1
    add("wmHold002")  # arrives while the pump is busy: the burst goes on
    assert intake.pump_once(app, "wecom", held) == 1
    assert len(sb.state.welcome_messages) == 2  # both welcomes out at once
    assert processing() == ["pending", "pending"] and len(held) == 2
    assert default_queue.job_ids == []
    db_session.close()

    assert intake.pump_once(app, "wecom", held) == 0  # nothing waits: the burst is over
    assert processing() == ["enqueued", "enqueued"] and held == []
    assert len(default_queue.job_ids) == 2
    db_session.close()

    # Traffic that never pauses: past HELD_MAX the held jobs go anyway.
    monkeypatch.setattr(intake, "HELD_MAX", 2)
    add("wmHold003")
    assert intake.pump_once(app, "wecom", held) == 1 and len(held) == 1
    add("wmHold004")
    assert intake.pump_once(app, "wecom", held) == 1 and held == []
    assert len(default_queue.job_ids) == 4
    db_session.close()

    jobs.set_worker_app(app)
    SimpleWorker(list(jobs.QUEUES), connection=redis_dispatcher, serializer=JSONSerializer).work(burst=True)
    db_session.expire_all()
    assert sorted(db_session.scalars(select(WeComRawEvent.status))) == ["processed"] * 4
    assert processing() == ["done"] * 4


@pytest.mark.redis
def test_with_workers_the_ack_stores_one_row_and_a_pump_sends_the_welcome_at_once(
    client: Any, db_session: Any, world: Any, redis_dispatcher: Any
) -> None:
    """The acknowledgement writes the raw event, nothing more (no job row, nothing in Redis); a
    worker's pump admits it and sends the welcome itself at once, while the processing goes to
    RQ's default queue. The welcome's outbox row is delayed, not queued: the relayer hands it to
    RQ only if no pump ran it."""
    from rq import Queue, SimpleWorker
    from rq.serializers import JSONSerializer

    from backend.platform import intake, jobs

    app = client.application
    sb = world["sb"]
    channel_with_template(client, db_session, world, [])
    resp, code = add_with_code(client, sb)
    assert resp.data == b"success"
    raw = db_session.scalars(select(WeComRawEvent)).one()
    assert raw.status == "accepted"
    assert db_session.scalars(select(OutboxJob)).all() == []  # no job yet: the ack did one write
    assert redis_dispatcher.keys("*") == []
    db_session.close()  # the app contexts below remove the test's session when they pop

    assert intake.pump_once(app, "wecom") == 1
    assert [m["welcome_code"] for m in sb.state.welcome_messages] == [code]  # no RQ worker ran
    assert db_session.get(WeComRawEvent, raw.id).status == "received"
    by_name = {j.name: j for j in db_session.scalars(select(OutboxJob))}
    assert {n: (j.queue, j.status) for n, j in by_name.items()} == {
        "wecom.send_welcome": ("high", "done"),
        "wecom.process_event": ("default", "enqueued"),
    }
    assert Queue("high", connection=redis_dispatcher, serializer=JSONSerializer).job_ids == []
    assert intake.pump_once(app, "wecom") == 0  # admitted once
    db_session.close()

    jobs.set_worker_app(app)
    SimpleWorker(list(jobs.QUEUES), connection=redis_dispatcher, serializer=JSONSerializer).work(burst=True)
    assert len(sb.state.welcome_messages) == 1
    row = db_session.scalars(select(WelcomeMessage)).one()
    assert row.status == "sent" and row.latency_ms is not None and row.customer_id is not None
    assert db_session.get(WeComRawEvent, raw.id).status == "processed"


@pytest.mark.redis
def test_a_welcome_no_pump_ran_goes_to_rq_after_its_delay(
    client: Any, db_session: Any, world: Any, redis_dispatcher: Any
) -> None:
    """A pump that died between admitting and sending: the relayer hands the welcome over once
    its delay is up, and an RQ worker sends it."""

    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    from backend.platform import jobs

    app = client.application
    sb = world["sb"]
    code, admission = admitted_add(client, db_session, world)  # its urgent job never run
    assert admission.events == 1 and len(admission.urgent_job_ids) == 1
    assert jobs.relay(app=app) == 0  # not due yet: a pump would send it meanwhile
    make_due(app, admission.urgent_job_ids[0])
    assert jobs.relay(app=app) == 1
    jobs.set_worker_app(app)
    SimpleWorker(list(jobs.QUEUES), connection=redis_dispatcher, serializer=JSONSerializer).work(burst=True)
    assert [m["welcome_code"] for m in sb.state.welcome_messages] == [code]


@pytest.mark.redis
@pytest.mark.parametrize("first", ["wecom.send_welcome", "wecom.process_event"])
def test_welcome_is_linked_to_the_customer_once_whichever_job_runs_first(
    client: Any, db_session: Any, world: Any, redis_dispatcher: Any, first: str
) -> None:
    """The welcome job leaves the customer link and the touchpoint to whichever of it and the
    event's processing runs second: one `welcome_sent` touchpoint in either order."""
    from backend.platform import intake, jobs
    from backend.touchpoints.models import Touchpoint

    app = client.application
    sb = world["sb"]
    channel_with_template(client, db_session, world, [])
    resp, code = add_with_code(client, sb)
    assert resp.data == b"success"
    db_session.close()  # the app contexts below remove the test's session when they pop
    assert intake.admit_now(app, "wecom", None).events == 1  # admitted; the jobs are run below
    by_name = {j.name: j.id for j in db_session.scalars(select(OutboxJob))}
    db_session.close()
    second = "wecom.process_event" if first == "wecom.send_welcome" else "wecom.send_welcome"
    for name in (first, second):
        assert jobs.execute(by_name[name], app=app) == "done"
        db_session.close()
    row = db_session.scalars(select(WelcomeMessage)).one()
    assert row.status == "sent" and row.customer_id is not None
    assert [m["welcome_code"] for m in sb.state.welcome_messages] == [code]
    sent = db_session.scalars(select(Touchpoint).where(Touchpoint.kind == "welcome_sent")).all()
    assert [(t.customer_id, t.source_ref) for t in sent] == [
        (row.customer_id, f"wecom:ev{row.raw_event_id}:welcome_sent")
    ]


@pytest.mark.redis
def test_a_pump_sends_a_bursts_welcomes_as_one_batch_and_a_failed_one_goes_to_rq(
    client: Any, db_session: Any, world: Any, redis_dispatcher: Any
) -> None:
    """Five adds acknowledged before a pump looks: it admits them together and sends their five
    welcomes in one batch, each with its own customer's name. WeCom refusing one send (a 5xx)
    fails that one only: its row stays pending with the error, the relayer hands it to RQ once
    its delay is up, and it is sent then — each code used once."""

    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    from backend.platform import intake, jobs

    app = client.application
    sb = world["sb"]
    channel_with_template(client, db_session, world, [])
    codes: dict[str, str] = {}
    for i in range(5):
        ext = f"wmBatch{i:03d}"
        sb.state.add_external_contact(ext, f"车主{i}", follow_userid=ZHANG, state="welcome-qr", add_way=1)
        code = sb.state.issue_welcome_code(ZHANG, ext)
        xml = contact_xml(
            sb, "add_external_contact", ZHANG, ext, int(time.time()), State="welcome-qr", WelcomeCode=code
        )
        assert post_event(client, sb, xml).data == b"success"
        codes[code] = f"车主{i}"
    sb.state.set_fault("down", service="wecom", path="/cgi-bin/externalcontact/send_welcome_msg", count=1)
    db_session.close()

    assert intake.pump_once(app, "wecom") == 5
    sent = {m["welcome_code"]: m["text"]["content"] for m in sb.state.welcome_messages}
    assert len(sent) == 4
    for code, text in sent.items():
        assert text.startswith(codes[code] + "您好！我是门店0-0的张顾问")
    welcome_jobs = db_session.scalars(
        select(OutboxJob).where(OutboxJob.name == "wecom.send_welcome").order_by(OutboxJob.id)
    ).all()
    assert sorted(j.status for j in welcome_jobs) == ["done", "done", "done", "done", "pending"]
    failed = next(j for j in welcome_jobs if j.status == "pending")
    assert failed.attempts == 1 and failed.last_error
    assert sorted(r.status for r in db_session.scalars(select(WelcomeMessage))) == ["sent"] * 4
    db_session.close()

    make_due(app, failed.id)
    assert jobs.relay(app=app) >= 1
    jobs.set_worker_app(app)
    SimpleWorker(list(jobs.QUEUES), connection=redis_dispatcher, serializer=JSONSerializer).work(burst=True)
    assert sorted(m["welcome_code"] for m in sb.state.welcome_messages) == sorted(codes)
    rows = db_session.scalars(select(WelcomeMessage)).all()
    assert sorted(r.status for r in rows) == ["sent"] * 5
    assert all(r.customer_id is not None for r in rows)  # settled once each event was processed
    assert db_session.get(OutboxJob, failed.id).status == "done"


@pytest.mark.redis
@pytest.mark.mariadb
@pytest.mark.dbcommit
def test_the_rq_copy_of_a_welcome_its_batch_is_sending_waits_and_skips(
    client: Any, db_session: Any, world: Any, redis_dispatcher: Any
) -> None:
    """Real threads and commits: WeCom is slow, so the relayer hands the welcome to RQ while the
    pump's batch is still sending it. The RQ copy waits on the job's row lock, then finds it
    done: one message, one welcome row."""
    from backend.platform import jobs

    app = client.application
    sb = world["sb"]
    code, admission = admitted_add(client, db_session, world)
    (welcome_job,) = admission.urgent_job_ids
    sender, batch_done = batch_inside_a_slow_send(app, sb, welcome_job)
    started = time.monotonic()
    assert jobs.execute(welcome_job, app=app) == "skipped"
    waited = time.monotonic() - started
    sender.join(10)
    assert batch_done == [1]
    assert waited > 0.3  # it waited for the batch's commit instead of sending too
    assert [m["welcome_code"] for m in sb.state.welcome_messages] == [code]
    try:
        rows = db_session.scalars(select(WelcomeMessage)).all()
        assert [r.status for r in rows] == ["sent"]
        job_row = db_session.get(OutboxJob, welcome_job)
        assert (job_row.status, job_row.attempts) == ("done", 1)
    finally:
        db_session.close()  # real commits here: no transaction may stay open after the test


@pytest.mark.redis
@pytest.mark.mariadb
@pytest.mark.dbcommit
def test_a_welcome_sent_by_a_batch_whose_transaction_then_failed_stays_recorded_as_sent(
    client: Any, db_session: Any, world: Any, redis_dispatcher: Any
) -> None:
    """The batch's connection is killed while WeCom takes the message: its transaction is gone,
    its job row left pending. The outcome was committed on its own right after WeCom answered,
    so the retry finds the welcome recorded as `sent` and does not send it again."""
    from sqlalchemy import text

    from backend.platform import jobs
    from backend.platform.db import db

    app = client.application
    sb = world["sb"]
    code, admission = admitted_add(client, db_session, world)
    (welcome_job,) = admission.urgent_job_ids
    sender, outcome = batch_inside_a_slow_send(app, sb, welcome_job)
    with db.engine.connect() as other:  # the connection whose transaction holds the job's row
        holder = other.execute(
            text(
                "SELECT t.trx_mysql_thread_id FROM information_schema.innodb_trx t "
                "JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id "
                "WHERE t.trx_rows_locked > 0 AND p.db = DATABASE()"
            )  # this test's database: another xdist worker's tests run on the same server
        ).scalar_one()
        other.execute(text(f"KILL {int(holder)}"))
    sender.join(10)
    assert outcome == [0]  # the batch failed as a whole
    try:
        assert db_session.get(OutboxJob, welcome_job).status == "pending"
        db_session.close()
        assert jobs.execute(welcome_job, app=app) == "done"  # the retry finds the outcome recorded
        assert [m["welcome_code"] for m in sb.state.welcome_messages] == [code]
        assert sb.hits("/cgi-bin/externalcontact/send_welcome_msg", "wecom") == 1  # not sent again
        rows = db_session.scalars(select(WelcomeMessage)).all()
        assert [(r.status, r.errcode) for r in rows] == [("sent", None)]
        assert rows[0].latency_ms is not None
    finally:
        db_session.close()
