"""GET /consult/conversations/<id>/transfer-targets: whom the assignee or a manager may hand a
conversation to (the rules of POST …/transfer), for the H5 page's picker. An advisor's own scope
lists no colleagues, so without it the assignee could not choose anyone."""

from __future__ import annotations

from typing import Any

from tests.consult.conftest import WB, open_conv


def _targets(client: Any, headers: dict[str, str], conv_id: int) -> Any:
    return client.get(f"{WB}/conversations/{conv_id}/transfer-targets", headers=headers)


def test_the_assignee_and_a_manager_get_the_stores_other_advisors_and_others_are_refused(
    client: Any, world: Any, make_staff: Any, tree: Any
) -> None:
    make_staff(tree.stores[0], "sales_advisor", userid="adv.gone", name="吴离职", status="resigned")
    conv = open_conv(client, world.owner, topic="service")
    assert conv["advisor"]["id"] == world.service.id
    expected = [
        {"id": p.id, "name": name}
        for p, name in ((world.sales, "王销售"), (world.sales2, "李销售"), (world.insurance, "钱金融"))
    ]
    for who in (world.service, world.manager):
        resp = _targets(client, who.headers, conv["id"])
        assert resp.status_code == 200, resp.get_json()
        assert resp.get_json()["items"] == expected  # not the assignee, the manager or the resigned
    # Each listed advisor is one the transfer accepts.
    moved = client.post(
        f"{WB}/conversations/{conv['id']}/transfer", json={"advisor_id": world.sales2.id}, headers=world.service.headers
    )
    assert moved.status_code == 200, moved.get_json()
    # The former assignee no longer sees it; another store's advisor never did: not found.
    assert _targets(client, world.service.headers, conv["id"]).status_code == 404
    assert _targets(client, world.foreign_advisor.headers, conv["id"]).status_code == 404
    # An unclaimed conversation in the store's queue: an advisor sees it but may not transfer it.
    queued = open_conv(client, world.walk_in, topic="service")
    assert queued["advisor"] is None
    refused = _targets(client, world.sales.headers, queued["id"])
    assert refused.status_code == 403 and refused.get_json()["code"] == "consult.not_assignee"
    everyone = _targets(client, world.manager.headers, queued["id"]).get_json()["items"]
    assert [t["id"] for t in everyone] == [world.sales.id, world.sales2.id, world.service.id, world.insurance.id]
