"""The corporate tag library's sync under real concurrency (MariaDB, real threads, real commits):
two syncs of one corp read WeCom one after the other, so a copy read earlier is never written
over a newer one; a burst of tag events reads WeCom once."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from backend.platform.db import db, utcnow
from backend.wecom import service as svc
from backend.wecom.models import WeComTag

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]

TAG_LIST = "/cgi-bin/externalcontact/get_corp_tag_list"


@pytest.fixture
def corp(app: Any, sandbox_reset: Any) -> str:
    """The sandbox's corp, with a tag group added in WeCom and the library synced once."""
    corp_id = sandbox_reset.credentials["WECOM_CORP_ID"]
    sandbox_reset.state.add_tag_group("来源", ["门店活码"])
    with app.app_context():
        session = db.session_factory()
        try:
            assert svc.sync_tag_library(session, corp_id, svc.gateway_for(corp_id))
            session.commit()
        finally:
            session.close()
    return corp_id


def _library(app: Any, corp: str) -> dict[str, bool]:
    with app.app_context():
        session = db.session_factory()
        try:
            return {t.name: t.deleted for t in session.scalars(select(WeComTag).where(WeComTag.corp_id == corp))}
        finally:
            session.close()


def test_a_second_sync_reads_wecom_only_after_the_first_has_committed(app: Any, sandbox_reset: Any, corp: str) -> None:
    """Worker A has read WeCom and written its copy, not yet committed. A tag is created in
    WeCom and worker B syncs for it: B must not read WeCom until A is done, else A's older copy
    could be committed last (and mark B's new tag deleted)."""
    sb = sandbox_reset
    with app.app_context():
        reads = sb.hits(TAG_LIST, "wecom")

        a = db.session_factory()
        svc.sync_tag_library(a, corp, svc.gateway_for(corp))  # read and written, not committed
        sb.state.add_tag_group("意向", ["高意向"])  # created in WeCom after A's read
        b_done: list[Any] = []

        def worker_b() -> None:
            with app.app_context():
                b = db.session_factory()
                try:
                    b_done.append(svc.sync_tag_library(b, corp, svc.gateway_for(corp), utcnow()))
                    b.commit()
                except Exception as exc:  # surfaced by the assertion below
                    b_done.append(exc)
                finally:
                    b.close()

        thread = threading.Thread(target=worker_b)
        thread.start()
        try:
            time.sleep(0.5)
            assert sb.hits(TAG_LIST, "wecom") == reads + 1  # A's read only: B waits for A's lock
            assert b_done == []
        finally:
            a.commit()
            a.close()
        thread.join(30)
    assert not thread.is_alive()
    assert b_done and not isinstance(b_done[0], Exception), b_done
    assert sb.hits(TAG_LIST, "wecom") == reads + 2  # B read WeCom after A's commit
    library = _library(app, corp)
    assert library["门店活码"] is False and library["高意向"] is False


def test_a_burst_of_tag_events_reads_wecom_once(app: Any, sandbox_reset: Any, corp: str) -> None:
    """A sync for a change announced before the last sync began reading stands down: that read
    saw the change. A change announced after it is read again."""
    sb = sandbox_reset
    with app.app_context():
        session = db.session_factory()
        try:
            # The burst's callbacks arrived 10 s before the fixture's sync began reading WeCom.
            announced = utcnow() - timedelta(seconds=10)
            reads = sb.hits(TAG_LIST, "wecom")
            for _ in range(3):  # the burst's events, processed after that read
                assert svc.sync_tag_library(session, corp, svc.gateway_for(corp), announced) is None
                session.commit()
            assert sb.hits(TAG_LIST, "wecom") == reads
            sb.state.add_tag_group("意向", ["高意向"])
            assert svc.sync_tag_library(session, corp, svc.gateway_for(corp), utcnow())  # a later change: read
            session.commit()
            assert sb.hits(TAG_LIST, "wecom") == reads + 1
        finally:
            session.close()
    library = _library(app, corp)
    assert library["门店活码"] is False and library["高意向"] is False


def test_several_syncs_waiting_for_one_all_go_through(app: Any, corp: str) -> None:
    """A burst's tag events on several workers: three syncs wait while one reads WeCom. When it
    commits they take the lock one after the other (a refused INSERT of the lock row would give
    each a shared lock first, and two of them would deadlock asking for the exclusive one)."""
    with app.app_context():  # the fixture's sync made the lock row
        holder = db.session_factory()
        svc.lock_sync(holder, corp, "tags")
        outcomes: list[Any] = []

        def worker() -> None:
            with app.app_context():
                session = db.session_factory()
                try:
                    outcomes.append(svc.sync_tag_library(session, corp, svc.gateway_for(corp)))
                    session.commit()
                except Exception as exc:  # a deadlock would land here
                    outcomes.append(exc)
                    session.rollback()
                finally:
                    session.close()

        threads = [threading.Thread(target=worker) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.5)
            assert outcomes == []  # all three wait for the lock
        finally:
            holder.commit()
            holder.close()
        for thread in threads:
            thread.join(30)
    assert len(outcomes) == 3 and all(isinstance(o, int) and o > 0 for o in outcomes), outcomes
