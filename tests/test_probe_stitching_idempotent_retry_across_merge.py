"""Probe: a member's app retries a create (same Idempotency-Key, same token) after staff merged
the member into another customer between the first try and the retry."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from backend.platform.actors import SystemActor


def test_a_retry_across_a_merge_replays_the_first_answer(
    client: Any, db_session: Any, make_customer: Any, member_headers: Any
) -> None:
    from backend.customers.service import merge_customers
    from backend.packages.models import PackagePurchase, ServicePackage

    a, b = make_customer(), make_customer()
    package = ServicePackage(name="基础保养3次卡", service_type="basic_maintenance", uses=3, price_fen=30000)
    db_session.add(package)
    db_session.flush()
    headers = {**member_headers(a), "Idempotency-Key": "buy-across-merge"}
    url = f"/api/app/v1/packages/{package.id}/purchases"
    first = client.post(url, json={}, headers=headers)  # its answer lost on the way, say
    assert first.status_code == 201, first.get_json()
    merge_customers(db_session, SystemActor("test"), a.id, b.id, "同一人")
    retry = client.post(url, json={}, headers=headers)
    purchases = db_session.scalar(select(func.count()).select_from(PackagePurchase))
    assert (retry.status_code, retry.headers.get("Idempotent-Replayed"), retry.get_json()["id"], purchases) == (
        201,
        "true",
        first.get_json()["id"],
        1,
    )
