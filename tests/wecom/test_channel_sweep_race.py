"""The contact-way sweep (`wecom.contact_way.sweep`, left behind by a create whose answer was
lost) never deletes the contact way of a create of the same state that is in flight: real
threads on MariaDB, the sweep on a worker's connection, the retried create in its request.

Written as a review probe: the sweep listed the ways made since the lost call, found the
retry's way (WeCom had answered, the channel was not committed yet) held by no channel, and
deleted it — the retry then committed a live channel whose QR code WeCom no longer had. The
sweep now reads the state's channel with a locking read, which waits for the create's commit."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import select

from backend.platform.db import db
from backend.platform.jobs import OutboxJob
from backend.wecom import admin
from backend.wecom.models import WeComChannel
from tests.wecom.helpers import ZHANG, channel_world, post_channel

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    return channel_world(sandbox_reset, tree, make_staff, staff_headers)


def test_the_sweep_waits_for_a_create_in_flight_and_leaves_its_contact_way(
    client: Any, db_session: Any, app: Any, world: Any, monkeypatch: Any
) -> None:
    """A first create of state `store0-qr` gets no answer (5xx): 502, and a sweep is queued. The
    manager tries again; WeCom makes the retry's contact way, and the sweep runs on a worker
    before the retry has committed. The sweep waits for that commit, then sees the way held by
    the channel: the live channel keeps its QR code, and nothing is deleted."""
    sb = world["sb"]
    store_id = world["tree"].stores[0].id
    assert post_channel(client, world["h"], store_id, [ZHANG], state="warm-up").status_code == 201

    sb.state.set_fault("down", service="wecom", path="/cgi-bin/externalcontact/add_contact_way", count=1)
    lost = post_channel(client, world["h"], store_id, [ZHANG])
    assert lost.status_code == 502, lost.get_json()
    sweep_args = dict(
        db_session.scalars(select(OutboxJob.args).where(OutboxJob.name == admin.CONTACT_WAY_SWEEP_JOB)).one()
    )
    db_session.commit()  # end the reading transaction before the other connections write

    outcome: dict[str, Any] = {}

    def sweep() -> None:
        with app.app_context():
            session = db.session()
            try:
                outcome["deleted"] = admin.sweep_contact_ways(
                    session, sweep_args["corp_id"], sweep_args["state"], sweep_args["since"]
                )
                session.commit()
            except Exception as exc:  # surfaced in the assertions
                outcome["error"] = exc
            finally:
                db.session.remove()

    gateway = app.extensions["dealerloop.gateways"].wecom
    real_post = gateway.post
    worker: list[threading.Thread] = []

    def post(endpoint: str, data: dict[str, Any]) -> dict[str, Any]:
        result = real_post(endpoint, data)
        if endpoint.endswith("add_contact_way") and not worker:
            # WeCom has made the retry's way; the sweep runs now, on a worker. It is given the
            # time to finish (it did, before the fix) before the request goes on to commit.
            worker.append(threading.Thread(target=sweep))
            worker[0].start()
            worker[0].join(1.5)
        return result

    monkeypatch.setattr(gateway, "post", post)
    retry = post_channel(client, world["h"], store_id, [ZHANG])
    assert retry.status_code == 201, retry.get_json()
    assert worker, "the retry called add_contact_way"
    worker[0].join(30)

    assert "error" not in outcome, outcome.get("error")
    assert outcome["deleted"] == 0
    config_id = retry.get_json()["config_id"]
    assert (
        db_session.scalars(select(WeComChannel.config_id).where(WeComChannel.state == "store0-qr")).one() == config_id
    )
    with sb.state.lock:
        alive = config_id in sb.state.contact_ways
    assert alive, f"the live channel's contact way {config_id} was deleted in WeCom by the sweep"
