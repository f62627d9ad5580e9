"""Corp separation in callback processing: the same channel state in two corps welcomes with each corp's template."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from backend.wecom.models import (
    WeComChannel,
    WelcomeMessage,
    WelcomeTemplate,
)
from tests.wecom.helpers import (
    ZHANG,
    callback_world,
    corp_staff,
    run_due_jobs,
    second_wecom_app,
    sign_post,
    upstream_calls,
)

SAME_EXT = "wmSameStringInTwoCorps"


def test_same_state_in_two_corps_welcomes_with_each_corps_template(
    app: Any, client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, monkeypatch: Any
) -> None:
    world = callback_world(sandbox_reset, tree, make_staff)
    sb = world["sandbox"]
    with second_wecom_app(app, sb, monkeypatch) as (second, creds):
        corp_a, corp_b = sb.credentials["WECOM_CORP_ID"], creds["WECOM_CORP_ID"]
        corp_staff(db_session, corp_b, tree.stores[1], ZHANG, "sales_advisor", "B张顾问")
        second.state.add_member(ZHANG, "B张顾问")
        ta = WelcomeTemplate(name="A", store_id=tree.stores[0].id, text="A欢迎 {advisor_name}")
        tb = WelcomeTemplate(name="B", store_id=tree.stores[1].id, text="B欢迎 {advisor_name}")
        db_session.add_all([ta, tb])
        db_session.flush()
        for corp, store, template in ((corp_a, tree.stores[0], ta), (corp_b, tree.stores[1], tb)):
            db_session.add(
                WeComChannel(
                    corp_id=corp,
                    name="活码",
                    kind="store",
                    state="shared-state",
                    store_id=store.id,
                    userids=[ZHANG],
                    welcome_template_id=template.id,
                )
            )
        db_session.commit()
        second.state.add_external_contact("wmWelcomeB", "钱先生", follow_userid=ZHANG)
        code = second.state.issue_welcome_code(ZHANG, "wmWelcomeB")
        xml = second.state.change_external_contact_xml(
            corp_b,
            "add_external_contact",
            ZHANG,
            "wmWelcomeB",
            int(time.time()),
            State="shared-state",
            WelcomeCode=code,
        )
        sign_post(client, creds, xml)
        run_due_jobs(app)
        db_session.expire_all()
        row = db_session.scalars(select(WelcomeMessage)).one()
        assert (row.status, row.template_id) == ("sent", tb.id), (row.status, row.template_id, row.errcode)
        sent = upstream_calls(second, "/cgi-bin/externalcontact/send_welcome_msg")
        assert len(sent) == 1 and "B张顾问" in sent[0]["json"]["text"]["content"], sent
        assert not upstream_calls(sb, "/cgi-bin/externalcontact/send_welcome_msg")
