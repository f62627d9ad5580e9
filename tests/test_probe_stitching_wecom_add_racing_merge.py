"""Probe: writers racing a staff merge land on the survivor."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

from backend.customers.models import Customer, CustomerAdvisor, CustomerIdentity, IdentityKind
from tests.threads import held_merge, lock_wait_seen
from tests.wecom.helpers import contact_xml, ok, post_event, run_due_jobs

pytestmark = [pytest.mark.mariadb, pytest.mark.dbcommit]

ADVISOR = "advisor.zhang"
CUSTOMER = "wmDemoCustomer001"
UNIONID = "oDemoUnion001"


def test_wecom_add_racing_a_merge_of_its_contact_lands_on_the_survivor(
    app: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any
) -> None:
    make_staff(tree.stores[0], "sales_advisor", userid=ADVISOR, name="张顾问")
    source, target = Customer(name="企微"), Customer(name="会员")
    db_session.add_all([source, target])
    db_session.flush()
    db_session.add_all(
        [
            CustomerIdentity(customer_id=source.id, kind=IdentityKind.EXTERNAL_USERID, value=CUSTOMER),
            CustomerIdentity(customer_id=source.id, kind=IdentityKind.UNIONID, value=UNIONID),
        ]
    )
    db_session.commit()
    sid, tid = source.id, target.id
    from backend.wecom.models import WeComFriend

    with held_merge(app, sid, tid, release_after=3) as release:
        done = threading.Event()
        watcher = threading.Thread(target=lambda: (lock_wait_seen(10, done), release.set()))
        watcher.start()
        xml = contact_xml(sandbox_reset, "add_external_contact", ADVISOR, CUSTOMER, int(time.time()))
        ok(post_event(app.test_client(), sandbox_reset, xml))  # its handler runs while the merge holds the rows
        run_due_jobs(app)
        done.set()
    watcher.join(15)

    db_session.expire_all()
    assert db_session.scalars(select(WeComFriend.customer_id)).all() == [tid]
    assert db_session.scalars(select(CustomerAdvisor.customer_id)).all() == [tid]
    assert set(db_session.scalars(select(CustomerIdentity.customer_id))) == {tid}
