"""A directory sync that respells a staff userid (case only) keeps them on their capped channels."""

from __future__ import annotations

from typing import Any

from backend.wecom import service
from integrations.sandbox import wecom_ops
from tests.wecom.helpers import add_store_channel
from tests.wecom.test_directory_members import add_listed_member, snapshot, sync


def test_a_capped_channel_keeps_an_advisor_whose_userid_was_respelled(
    db_session: Any, app: Any, sandbox_reset: Any, tree: Any, make_staff: Any
) -> None:
    """The channel names "Zhang.San" (typed from the CSV import); the sync takes WeCom's
    spelling "zhang.san" for the staff row. Userids are case-insensitive in WeCom: the advisor is
    still on the channel's list for today."""
    st = sandbox_reset.state
    store = tree.stores[0]
    wecom_ops.add_department(st, 2, store.name)
    add_listed_member(st, "zhang.san", "张三")
    add_listed_member(st, "li.si", "李四")
    make_staff(store, "sales_advisor", userid="Zhang.San", name="张三", in_wecom=False)
    make_staff(store, "sales_advisor", userid="li.si", name="李四")
    with app.app_context():
        channel = add_store_channel(
            db_session, sandbox_reset, store.id, "store0-case", ["Zhang.San", "li.si"], daily_cap=5
        )
        before = service.users_for_today(db_session, channel)
    sync(app, db_session)
    assert "zhang.san" in snapshot(db_session)
    with app.app_context():
        after = service.users_for_today(db_session, channel)
    assert after == before == ["Zhang.San", "li.si"]
