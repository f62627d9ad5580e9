"""Opaque keys (client Idempotency-Keys, bulk-grant batch keys, dedup keys, nonces, refund
numbers, WeChat ids) are compared byte for byte. The database's default collation
(utf8mb4_unicode_ci) folds case, accents and widths and ignores trailing spaces, so two different
requests whose keys differed only in case were taken for one: the second got the first's stored
response or a 422."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, text

from backend.customers.models import Car
from backend.points import service

pytestmark = [pytest.mark.usefixtures("app_ctx")]

WB = "/api/workbench/v1"
VINS = ("LFV2A21K7G3000001", "WVWZZZ1KZ6W000001", "1M8GDM9AXKP042788")


def test_idempotency_keys_that_differ_only_in_case_or_width_are_three_operations(
    client: Any, make_customer: Any, member_headers: Any, db_session: Any
) -> None:
    owner = member_headers(make_customer())
    answers = [
        client.post("/api/app/v1/me/cars", json={"vin": vin}, headers={**owner, "Idempotency-Key": key})
        for vin, key in zip(VINS, ("Add-Car-1", "add-car-1", "ＡＤＤ-ＣＡＲ-1"), strict=True)
    ]
    assert [a.status_code for a in answers] == [201, 201, 201], [a.get_json() for a in answers]
    assert [a.get_json()["vin"] for a in answers] == list(VINS)
    assert db_session.scalar(select(func.count()).select_from(Car)) == 3

    # The same key, byte for byte, still replays its own answer.
    replay = client.post(
        "/api/app/v1/me/cars", json={"vin": VINS[1]}, headers={**owner, "Idempotency-Key": "add-car-1"}
    )
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json() == answers[1].get_json()
    assert db_session.scalar(select(func.count()).select_from(Car)) == 3


def test_bulk_grant_keys_that_differ_only_in_case_are_two_grants(
    client: Any, tree: Any, make_staff: Any, make_customer: Any, staff_headers: Any, db_session: Any
) -> None:
    manager = make_staff(tree.stores[0], "store_manager")
    first, second = make_customer(tree.stores[0]), make_customer(tree.stores[0])
    h = staff_headers(manager)
    for batch_key, member in (("Spring-2026", first), ("spring-2026", second)):
        r = client.post(
            f"{WB}/points/bulk-grants",
            json={"batch_key": batch_key, "customer_ids": [member.id], "points": 30, "reason": "春季活动"},
            headers=h,
        )
        assert r.status_code == 202 and r.get_json()["queued"] is True, r.get_json()
    assert (service.account(db_session, first.id).available, service.account(db_session, second.id).available) == (
        30,
        30,
    )
    # A re-run of either batch grants nobody twice.
    assert service.bulk_grant(db_session, service.grant_batch(manager.id, "spring-2026"), [second.id], 30, "x", 1) == 0


def test_wechat_openids_that_differ_only_in_case_are_two_members(
    client: Any, sandbox_reset: Any, db_session: Any
) -> None:
    """openids (and unionids, external_userids) are WeChat's case-sensitive tokens: the second
    person logged in as the first (their openid matched the first's identity row)."""
    from backend.customers.models import Customer

    ids = []
    for openid in ("oAbCdEfGhIjKlMnOpQrStUvWxYz0", "oabcdefghijklmnopqrstuvwxyz0"):
        resp = client.post("/api/app/v1/auth/login", json={"code": sandbox_reset.state.issue_login_code(openid)})
        assert resp.status_code == 200, resp.get_json()
        ids.append(resp.get_json()["customer_id"])
    assert ids[0] != ids[1]
    assert db_session.scalar(select(func.count()).select_from(Customer)) == 2


@pytest.mark.mariadb
def test_every_exact_key_column_is_byte_exact_in_the_migrated_database(db_session: Any) -> None:
    """The model declares the columns ExactString; the migrations must have made them so (the
    models-vs-migrations drift check does not see a collation the database lacks)."""
    from backend.models import metadata
    from backend.platform.db import ExactString

    declared = {
        (table.name, column.name)
        for table in metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, ExactString)
    }
    assert ("idempotency_record", "key") in declared and len(declared) >= 10
    rows = db_session.execute(
        text(
            "SELECT table_name, column_name, collation_name FROM information_schema.columns"
            " WHERE table_schema = DATABASE()"
        )
    ).all()
    found = {(t, c): collation for t, c, collation in rows if (t, c) in declared}
    assert found.keys() == declared
    assert set(found.values()) == {"utf8mb4_nopad_bin"}, found
    # And the collation really is exact: no case, width or trailing-space folding.
    same = db_session.execute(
        text(
            "SELECT 'KeyA' = 'keya' COLLATE utf8mb4_nopad_bin, 'KeyA' = 'ＫｅｙＡ' COLLATE utf8mb4_nopad_bin,"
            " 'KeyA' = 'KeyA ' COLLATE utf8mb4_nopad_bin"
        )
    ).one()
    assert tuple(same) == (0, 0, 0)
