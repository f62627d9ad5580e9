"""Sandbox WeCom endpoints of the operations room: the member directory (`department/list`,
`user/list`, `user/get`), resigned and on-duty customer transfers with WeCom's result
statuses, and the unassigned (resigned advisors') customer list.

Transfers move the way WeCom's do: a customer accepted by `transfer_customer` (errcode 0) is
"waiting" (status 2) for a poll or two of `transfer_result`, then becomes final — done (1, the
relation moves to the takeover member), refused by the customer (3), the takeover member at
their customer limit (4). Tests steer the outcome per customer (`plan_transfer`) and the limit
per member (`set_customer_limit`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request

from .common import fail, json_body, ok
from .state import MEMBER_LIST_STATUS

if TYPE_CHECKING:
    from .state import SandboxState

WAITING, DONE, REFUSED, LIMIT = 2, 1, 3, 4
ROOT_DEPARTMENT = 1


@dataclass
class WeComOpsState:
    """Directory and transfer state beyond the base fake (reset with it)."""

    departments: dict[int, dict[str, Any]] = field(default_factory=dict)
    member_departments: dict[str, list[int]] = field(default_factory=dict)
    member_positions: dict[str, str] = field(default_factory=dict)
    # external_userid -> (polls answering "waiting" before the final status, final status)
    plans: dict[str, tuple[int, int]] = field(default_factory=dict)
    customer_limits: dict[str, int] = field(default_factory=dict)
    # (handover, takeover, external_userid) -> transfer row of the on-duty flow
    duty_transfers: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    default_polls: int = 1

    def __post_init__(self) -> None:
        if not self.departments:
            self.departments[ROOT_DEPARTMENT] = {"id": ROOT_DEPARTMENT, "name": "集团", "parentid": 0, "order": 1}


def ops_of(state: SandboxState) -> WeComOpsState:
    ops = getattr(state, "ops", None)
    if ops is None:  # a state built before the ops hook existed
        ops = WeComOpsState()
        state.ops = ops  # type: ignore[attr-defined]
    return ops


# --- helpers for tests and seeds ---------------------------------------------------------------
def add_department(state: SandboxState, department_id: int, name: str, parentid: int = ROOT_DEPARTMENT) -> None:
    with state.lock:
        ops = ops_of(state)
        ops.departments[department_id] = {
            "id": department_id,
            "name": name,
            "parentid": parentid,
            "order": len(ops.departments) + 1,
        }


def remove_department(state: SandboxState, department_id: int) -> None:
    with state.lock:
        ops_of(state).departments.pop(department_id, None)


def place_member(state: SandboxState, userid: str, department_ids: list[int], position: str = "") -> None:
    with state.lock:
        ops = ops_of(state)
        ops.member_departments[userid] = list(department_ids)
        if position:
            ops.member_positions[userid] = position


def plan_transfer(state: SandboxState, external_userid: str, final_status: int = DONE, polls: int = 1) -> None:
    """The next transfer of this customer answers "waiting" for `polls` polls, then `final_status`."""
    with state.lock:
        ops_of(state).plans[external_userid] = (polls, final_status)


def set_customer_limit(state: SandboxState, userid: str, limit: int) -> None:
    with state.lock:
        ops_of(state).customer_limits[userid] = limit


def _departments_of(state: SandboxState, userid: str) -> list[int]:
    return list(ops_of(state).member_departments.get(userid) or [ROOT_DEPARTMENT])


def _listed(member: dict[str, Any]) -> bool:
    """Whether the directory still lists the member (all but those deleted from it)."""
    return member["status"] in MEMBER_LIST_STATUS


def _member_view(state: SandboxState, userid: str) -> dict[str, Any]:
    member = state.members[userid]
    departments = _departments_of(state, userid)
    return {
        "userid": userid,
        "name": member["name"],
        "department": departments,
        "main_department": departments[0],
        "position": ops_of(state).member_positions.get(userid, ""),
        "status": MEMBER_LIST_STATUS[member["status"]],
        "enable": 0 if member["status"] == "disabled" else 1,
    }


def _subtree(state: SandboxState, root: int) -> list[int]:
    departments = ops_of(state).departments
    out, todo = [], [root]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(d["id"] for d in departments.values() if d["parentid"] == current and d["id"] != current)
    return out


def _finalise(state: SandboxState, table: dict, key: tuple[str, str, str], transfer: dict[str, Any]) -> None:
    """Apply a waiting transfer's final status (caller holds the lock)."""
    handover, takeover, ext = key
    polls, final = ops_of(state).plans.get(ext, (ops_of(state).default_polls, DONE))
    limit = ops_of(state).customer_limits.get(takeover)
    if final == DONE and limit is not None and sum(1 for (u, _e) in state.follows if u == takeover) >= limit:
        final = LIMIT
    transfer["status"] = final
    transfer["takeover_time"] = int(state.now()) if final == DONE else 0
    if final == DONE:
        follow = state.follows.pop((handover, ext), None)
        if follow is not None:
            follow = copy.deepcopy(follow)
            follow["userid"] = takeover
            follow["oper_userid"] = takeover
            state.follows[(takeover, ext)] = follow


def _advance(state: SandboxState, table: dict, handover: str, takeover: str) -> list[dict[str, Any]]:
    """One `transfer_result` poll: rows as they stand now; waiting rows count the poll down."""
    rows = []
    for key, transfer in table.items():
        if key[0] != handover or key[1] != takeover:
            continue
        if transfer["status"] == WAITING:
            transfer["_polls_left"] = transfer.get("_polls_left", 0) - 1
            if transfer["_polls_left"] < 0:
                _finalise(state, table, key, transfer)
        rows.append({k: v for k, v in transfer.items() if not k.startswith("_")})
    return rows


def register_ops_routes(app: Flask, state: SandboxState) -> None:
    def authorised() -> Response | None:
        errcode, _info = state.check_token("wecom", request.args.get("access_token"))
        return fail(errcode) if errcode else None

    def body_or_fail() -> tuple[Response | None, dict[str, Any]]:
        bad = authorised()
        if bad:
            return bad, {}
        data = json_body()
        if data is None:
            return fail(47001), {}
        return None, data

    # --- member directory --------------------------------------------------------------
    @app.get("/cgi-bin/department/list")
    def department_list() -> Response:
        bad = authorised()
        if bad:
            return bad
        with state.lock:
            ops = ops_of(state)
            root = request.args.get("id")
            if root:
                try:
                    root_id = int(root)
                except ValueError:
                    return fail(60123, "invalid party id")
                if root_id not in ops.departments:
                    return fail(60123, "invalid party id")
                ids = _subtree(state, root_id)
            else:
                ids = sorted(ops.departments)
            return ok(department=[copy.deepcopy(ops.departments[i]) for i in sorted(ids)])

    @app.get("/cgi-bin/user/list")
    def user_list() -> Response:
        bad = authorised()
        if bad:
            return bad
        try:
            department_id = int(request.args.get("department_id", ""))
        except ValueError:
            return fail(60123, "invalid party id")
        with state.lock:
            if department_id not in ops_of(state).departments:
                return fail(60123, "invalid party id")
            wanted = set(_subtree(state, department_id)) if request.args.get("fetch_child") == "1" else {department_id}
            # Members deleted from the directory (resigned) are gone; disabled, not yet activated
            # and exited members are still listed, with their `status`.
            users = [
                _member_view(state, u)
                for u, m in sorted(state.members.items())
                if _listed(m) and wanted & set(_departments_of(state, u))
            ]
        return ok(userlist=users)

    @app.get("/cgi-bin/user/get")
    def user_get() -> Response:
        bad = authorised()
        if bad:
            return bad
        userid = request.args.get("userid", "")
        with state.lock:
            member = state.members.get(userid)
            if member is None or not _listed(member):
                return fail(60111, f"invalid userid {userid}")
            return ok(**_member_view(state, userid))

    # --- resigned advisors' customers ----------------------------------------------------
    @app.post("/cgi-bin/externalcontact/get_unassigned_list")
    def get_unassigned_list() -> Response:
        bad, data = body_or_fail()
        if bad:
            return bad
        page_size = data.get("page_size", 1000)
        if not isinstance(page_size, int) or not 1 <= page_size <= 1000:
            return fail(40058, "page_size must be 1..1000")
        try:
            start = int(data.get("cursor") or 0)
        except ValueError:
            return fail(40058, "invalid cursor")
        with state.lock:
            waiting = {(h, e) for (h, _t, e), t in state.transfers.items() if t["status"] == WAITING}
            rows = [
                {"handover_userid": u, "external_userid": e, "dimission_time": int(state.now())}
                for (u, e) in sorted(state.follows)
                if state.members.get(u, {}).get("status") == "resigned" and (u, e) not in waiting
            ]
        page = rows[start : start + page_size]
        is_last = start + page_size >= len(rows)
        return ok(info=page, is_last=is_last, next_cursor="" if is_last else str(start + page_size))

    # --- transfers ---------------------------------------------------------------------
    def submit(data: dict[str, Any], table: dict, *, resigned: bool) -> Response:
        handover, takeover = data.get("handover_userid", ""), data.get("takeover_userid", "")
        externals = data.get("external_userid") or []
        if not isinstance(externals, list) or not 1 <= len(externals) <= 100:
            return fail(40058, "external_userid must hold 1..100 ids")
        message = data.get("transfer_success_msg")
        if message is not None and (not isinstance(message, str) or len(message) > 200):
            return fail(40058, "transfer_success_msg is at most 200 chars")
        with state.lock:
            for userid in (handover, takeover):
                if userid not in state.members:
                    return fail(60111, f"invalid userid {userid}")
            if resigned and state.members[handover]["status"] != "resigned":
                return fail(40097, "handover_userid has not resigned")
            if not resigned and state.members[handover]["status"] != "active":
                return fail(40058, "handover_userid is not active")
            if state.members[takeover]["status"] != "active":
                return fail(40058, "takeover_userid is not active")
            customers = []
            for ext in externals:
                if (handover, ext) not in state.follows:
                    customers.append({"external_userid": ext, "errcode": 84061})
                    continue
                current = table.get((handover, takeover, ext))
                if current is not None and current["status"] == WAITING:
                    customers.append({"external_userid": ext, "errcode": 40100})  # already in transfer
                    continue
                polls, _final = ops_of(state).plans.get(ext, (ops_of(state).default_polls, DONE))
                table[(handover, takeover, ext)] = {
                    "external_userid": ext,
                    "status": WAITING,
                    "takeover_time": 0,
                    "_polls_left": polls,
                }
                customers.append({"external_userid": ext, "errcode": 0})
        return ok(customer=customers)

    def result(data: dict[str, Any], table: dict) -> Response:
        handover, takeover = data.get("handover_userid", ""), data.get("takeover_userid", "")
        if not handover or not takeover:
            return fail(40058, "handover_userid and takeover_userid are required")
        with state.lock:
            rows = _advance(state, table, handover, takeover)
        return ok(customer=rows, next_cursor="")

    @app.post("/cgi-bin/externalcontact/resigned/transfer_customer")
    def resigned_transfer_customer() -> Response:
        bad, data = body_or_fail()
        return bad or submit(data, state.transfers, resigned=True)

    @app.post("/cgi-bin/externalcontact/resigned/transfer_result")
    def resigned_transfer_result() -> Response:
        bad, data = body_or_fail()
        return bad or result(data, state.transfers)

    @app.post("/cgi-bin/externalcontact/transfer_customer")
    def transfer_customer() -> Response:
        bad, data = body_or_fail()
        return bad or submit(data, ops_of(state).duty_transfers, resigned=False)

    @app.post("/cgi-bin/externalcontact/transfer_result")
    def transfer_result() -> Response:
        bad, data = body_or_fail()
        return bad or result(data, ops_of(state).duty_transfers)


def seed_behaviour(state: SandboxState, userid: str, first_day: int, days: int, seed: int = 1) -> list[int]:
    """Plausible daily figures for one member from `first_day` (China midnight, epoch seconds):
    most days with chats and reply figures, every fourth day without chats (then WeCom sends no
    `reply_percentage` / `avg_reply_time`). Returns the days without chats."""
    import random

    rng = random.Random(f"{userid}:{seed}")
    quiet = []
    for i in range(days):
        day = first_day + i * 86400
        new_apply = rng.randint(0, 3)
        figures: dict[str, Any] = {
            "new_apply_cnt": new_apply,
            "new_contact_cnt": rng.randint(0, new_apply),
            "negative_feedback_cnt": 0,
        }
        if i % 4 == 2:
            figures.update(chat_cnt=0, message_cnt=0)
            quiet.append(day)
        else:
            chats = rng.randint(1, 15)
            figures.update(
                chat_cnt=chats,
                message_cnt=chats * rng.randint(2, 6),
                reply_percentage=round(rng.uniform(50, 100), 2),
                avg_reply_time=rng.randint(1, 60),
                negative_feedback_cnt=int(rng.random() < 0.1),
            )
        state.set_behavior(userid, day, **figures)
    return quiet
