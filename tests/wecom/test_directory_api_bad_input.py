"""Bad input on the behaviour / directory / group-chat admin APIs answers 4xx in the
single error format, never 500."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

BEHAVIOUR = "/api/workbench/v1/wecom/behaviour"
DEPARTMENTS = "/api/workbench/v1/wecom/departments"
CHATS = "/api/workbench/v1/wecom/group-chats"
HUGE = 10**30


def test_bad_input_is_a_4xx_with_a_code(
    client: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    """Oversized ids, odd dates and odd pages are client errors (or a plain empty/404 answer)."""
    admin = staff_headers(make_staff(tree.group, "group_admin", userid="admin.checks"))
    manager = staff_headers(make_staff(tree.stores[0], "store_manager", userid="mgr.probe"))
    client.post("/api/workbench/v1/wecom/directory/sync", headers=admin, json={})
    seen = []
    calls = [
        ("GET", BEHAVIOUR, manager, {"start_date": "2026-01-01", "end_date": "2026-01-02", "staff_id": HUGE}, None),
        ("GET", BEHAVIOUR, manager, {"start_date": "0001-01-01", "end_date": "0001-01-02"}, None),
        (
            "POST",
            f"{BEHAVIOUR}/pull",
            manager,
            None,
            {"start_date": "2026-01-01", "end_date": "2026-01-02", "staff_id": HUGE},
        ),
        ("POST", f"{BEHAVIOUR}/pull", manager, None, {"start_date": "9999-12-31", "end_date": "9999-12-31"}),
        ("POST", f"{BEHAVIOUR}/pull", manager, None, {"start_date": "0001-01-01", "end_date": "0001-01-01"}),
        ("POST", f"{BEHAVIOUR}/pull", manager, None, ["x"]),
        ("POST", f"{DEPARTMENTS}/map", admin, None, {"department_id": HUGE, "org_unit_id": None}),
        ("POST", f"{DEPARTMENTS}/map", admin, None, {"department_id": 1, "org_unit_id": HUGE}),
        ("GET", CHATS, manager, {"page": HUGE}, None),
        ("GET", CHATS, manager, {"page_size": 0}, None),
        ("GET", CHATS, manager, {"page": 10**6, "page_size": 100}, None),
    ]
    for method, url, headers, query, body in calls:
        resp = client.open(url, method=method, headers=headers, query_string=query, json=body)
        data = resp.get_json(silent=True)
        seen.append(
            (method, url, query or body, resp.status_code, (data or {}).get("code") if isinstance(data, dict) else data)
        )
    bad = [s for s in seen if s[3] >= 500 or (s[3] >= 400 and not s[4])]
    assert bad == [], seen


def test_fractional_ids_are_refused_not_truncated(
    client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    """`org_unit_id: <id>.5` is not an id: mapping a department must answer 422 request.invalid,
    not silently truncate it to another org node and remap the department's members there."""
    from backend.wecom.ops_models import WeComDepartment

    admin = staff_headers(make_staff(tree.group, "group_admin", userid="admin.checks"))
    client.post("/api/workbench/v1/wecom/directory/sync", headers=admin, json={})
    resp = client.post(
        f"{DEPARTMENTS}/map", headers=admin, json={"department_id": 1, "org_unit_id": tree.stores[1].id + 0.5}
    )
    db_session.expire_all()
    mapped = db_session.scalar(select(WeComDepartment.org_unit_id).where(WeComDepartment.department_id == 1))
    assert (resp.status_code, (resp.get_json() or {}).get("code"), mapped) == (422, "request.invalid", None)
