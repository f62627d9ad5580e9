"""An advisor WeCom's events named before the directory knew them: once the sync creates their
staff row, the relations stored for them become theirs, and so do the lost-customer alerts."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from backend.wecom.models import WeComAlert, WeComFriend
from integrations.sandbox import wecom_ops
from tests.wecom.helpers import contact_xml, post_event
from tests.wecom.test_directory_members import STORE_DEPARTMENT, add_listed_member, sync

NEW = "advisor.new"
CUSTOMER = "wmBeforeSync01"
LOST = "/api/workbench/v1/wecom/lost-customers"


def test_a_loss_before_the_advisor_was_synced_reaches_the_store_list(
    client: Any, db_session: Any, app: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    """The customer adds and then deletes advisor.new, who is in WeCom but not yet in our
    directory: the relation and the alert are stored without an advisor or a store, and the store
    manager's lost list cannot show them. The directory sync creates advisor.new at store 0:
    the relation is theirs and the loss is on store 0's list."""
    sb = sandbox_reset
    store = tree.stores[0]
    manager = staff_headers(make_staff(store, "store_manager", userid="mgr.adopt"))
    db_session.commit()
    wecom_ops.add_department(sb.state, STORE_DEPARTMENT, store.name)
    add_listed_member(sb.state, NEW, "新顾问")
    sb.state.add_external_contact(CUSTOMER, "林先生", follow_userid=NEW)
    t = int(time.time()) - 60
    assert post_event(client, sb, contact_xml(sb, "add_external_contact", NEW, CUSTOMER, t)).data == b"success"
    assert post_event(client, sb, contact_xml(sb, "del_follow_user", NEW, CUSTOMER, t + 5)).data == b"success"
    db_session.expire_all()
    alert = db_session.scalars(select(WeComAlert)).one()
    assert (alert.staff_id, alert.store_id) == (None, None)
    assert client.get(LOST, headers=manager).get_json()["total"] == 0

    stats = sync(app, db_session)
    assert stats["created"] >= 1
    db_session.expire_all()
    friend = db_session.scalars(select(WeComFriend).where(WeComFriend.external_userid == CUSTOMER)).one()
    alert = db_session.get(WeComAlert, alert.id)
    assert friend.staff_id is not None and alert.staff_id == friend.staff_id and alert.store_id == store.id
    listed = client.get(LOST, headers=manager).get_json()
    assert listed["total"] == 1, listed
