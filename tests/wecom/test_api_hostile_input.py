"""every WeCom operation of the OpenAPI spec (and the JS-SDK signature) answers hostile
input — wrong types, numbers past every integer column, blank and very long strings, nulls,
arrays for objects, unknown fields, bad query values and path ids, bodies that are not JSON —
as each role, with a client error in the one error format (`{code, status, message, errors}`),
never a 500. Deterministic: the inputs are a fixed list, the sampled ones drawn with a seeded
random.Random, so a failure reproduces."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from backend.platform.errors import MESSAGES
from tests.wecom.helpers import ZHANG

SEED = 20240601
METHODS = ("get", "post", "put", "patch", "delete")
CODE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")

HUGE = 2**64
HOSTILE_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**31,
    2**63,
    HUGE,
    -(2**63) - 1,
    10**30,
    1.5,
    1e308,
    "",
    " ",
    "x" * 5000,
    "\u0000",
    "😀" * 40,
    "'; DROP TABLE staff; --",
    "2024-02-30",
    "9999-12-31",
    "0001-01-01",
    [],
    [None],
    [HUGE],
    ["x" * 100],
    {},
    {"a": 1},
    [{"msgtype": "image", "image": {"material_id": HUGE}}],
]
HOSTILE_QUERY = [
    "",
    "-1",
    "0",
    "99999999999999999999",
    str(2**63),
    "abc",
    "1.5",
    "1e3",
    "2024-13-01",
    "2024-02-30",
    "0001-01-01",
    "9999-12-31",
    "\x00",
    "x" * 3000,
    "中文",
    "true",
    "null",
]
BAD_IDS = ["0", "99999999999999999999", str(2**63), str(2**31), "2147483647"]
ROLES = ("advisor", "store_manager", "region_manager", "marketing", "group_admin")


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def wecom_operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in sorted(spec["paths"].items())
        if "/wecom" in path or path.endswith("/jssdk/signature")
        for method, op in item.items()
        if method in METHODS
    ]


def error_shape_problem(resp: Any) -> str | None:
    """What is wrong with an error answer, None when it is in the one format."""
    body = resp.get_json(silent=True)
    if not isinstance(body, dict):
        return f"not a JSON object: {resp.data[:200]!r}"
    extra = set(body) - {"code", "status", "message", "errors"}
    if extra:
        return f"unknown keys {sorted(extra)}"
    if not isinstance(body.get("code"), str) or not CODE.match(body["code"]):
        return f"bad code {body.get('code')!r}"
    if body.get("status") != resp.status_code:
        return f"status {body.get('status')!r} != {resp.status_code}"
    if not isinstance(body.get("message"), str) or not body["message"]:
        return "no message"
    if body["code"] not in MESSAGES:
        return f"code {body['code']!r} has no registered message (answered {body['message']!r})"
    if "errors" in body and not isinstance(body["errors"], dict):
        return f"errors is {type(body['errors']).__name__}"
    return None


@pytest.fixture
def world(
    sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any, make_customer: Any, db_session: Any
) -> dict[str, Any]:
    from backend.wecom.models import WeComChannel, WeComRawEvent, WelcomeTemplate

    store = tree.stores[0]
    advisor = make_staff(store, "sales_advisor", userid=ZHANG, name="张顾问")
    advisor2 = make_staff(store, "sales_advisor", userid="advisor.wang", name="王顾问")
    staff = {
        "advisor": advisor,
        "store_manager": make_staff(store, "store_manager", userid="mgr0"),
        "region_manager": make_staff(tree.regions[0], "region_manager", userid="rmgr0"),
        "marketing": make_staff(tree.group, "marketing", userid="mkt0"),
        "group_admin": make_staff(tree.group, "group_admin", userid="gadmin"),
    }
    corp = sandbox_reset.credentials["WECOM_CORP_ID"]
    channel = WeComChannel(
        corp_id=corp, name="门店0", kind="store", state="probe-s0", store_id=store.id, userids=[ZHANG]
    )
    template = WelcomeTemplate(name="t", store_id=store.id, text="hi")
    raw = WeComRawEvent(corp_id=corp, dedup_hash="e" * 64, dedup_key="k", event="e", xml="<xml/>", status="dead")
    db_session.add_all([channel, template, raw])
    db_session.commit()
    customer = make_customer(store, advisor)
    ids = {
        "channel_id": channel.id,
        "template_id": template.id,
        "raw_event_id": raw.id,
        "customer_id": customer.id,
        "handover_id": 1,
        "material_id": 1,
    }
    return {
        "store_id": store.id,
        "advisor_id": advisor.id,
        "advisor2_id": advisor2.id,
        "headers": {role: staff_headers(s) for role, s in staff.items()},
        "ids": ids,
    }


def base_body(world: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """A plausible body for the operation, which the probes then break field by field."""
    store_id = world["store_id"]
    bodies = {
        ("post", "/api/workbench/v1/wecom/channels"): {
            "name": "活码",
            "kind": "store",
            "state": "probe-new",
            "userids": [ZHANG],
            "store_id": store_id,
        },
        ("patch", "/api/workbench/v1/wecom/channels/{channel_id}"): {"name": "新名字"},
        ("post", "/api/workbench/v1/wecom/welcome-templates"): {"name": "t2", "store_id": store_id, "text": "您好"},
        ("patch", "/api/workbench/v1/wecom/welcome-templates/{template_id}"): {"text": "您好呀"},
        ("post", "/api/workbench/v1/wecom/customers/{customer_id}/tags"): {"add_tag_ids": ["et-probe"]},
        ("post", "/api/workbench/v1/wecom/departments/map"): {"department_id": 1, "org_unit_id": store_id},
        ("post", "/api/workbench/v1/wecom/events/{raw_event_id}/replay"): {"reason": "probe"},
        ("post", "/api/workbench/v1/wecom/handovers"): {
            "kind": "on_duty",
            "handover_staff_id": world["advisor_id"],
            "takeover_staff_id": world["advisor2_id"],
            "external_userids": ["wm-probe"],
        },
        # Today's China day: within the 180 days a pull may reach back, so the fields after the
        # range check (staff_id) are reached too.
        ("post", "/api/workbench/v1/wecom/behaviour/pull"): {"start_date": _today(), "end_date": _today()},
    }
    return dict(bodies.get((method, path), {}))


def _today() -> str:
    from backend.wecom.behaviour import china_today

    return china_today().isoformat()


def fill(path: str, ids: dict[str, Any]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(ids[m.group(1)]), path)


class Recorder:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.count = 0

    def check(self, label: str, resp: Any) -> None:
        self.count += 1
        if resp.status_code >= 500:
            self.problems.append(f"{label} -> {resp.status_code} {resp.get_data(as_text=True)[:300]}")
        elif resp.status_code >= 400 and (problem := error_shape_problem(resp)):
            self.problems.append(f"{label} -> {resp.status_code} {problem}")

    def report(self) -> str:
        return f"{len(self.problems)} of {self.count} requests:\n" + "\n".join(self.problems[:80])


def _send(client: Any, method: str, url: str, headers: dict[str, str], **kwargs: Any) -> Any:
    return client.open(url, method=method.upper(), headers=headers, **kwargs)


@pytest.fixture
def spec(client: Any) -> dict[str, Any]:
    return client.get("/openapi.json").get_json()


def test_spec_lists_the_wecom_operations(spec: dict[str, Any]) -> None:
    """The walker below covers the whole WeCom API: if an operation is added, it is fuzzed too."""
    ops = {f"{m.upper()} {p}" for m, p, _ in wecom_operations(spec)}
    assert "POST /api/workbench/v1/wecom/channels" in ops
    assert "POST /callbacks/wecom" in ops
    assert "GET /api/workbench/v1/jssdk/signature" in ops
    assert len(ops) >= 30


@pytest.mark.parametrize("role", ROLES)
def test_hostile_json_fields_never_500(client: Any, spec: dict[str, Any], world: dict[str, Any], role: str) -> None:
    """Each JSON body field set to each hostile value, one at a time, plus an unknown field."""
    rec = Recorder()
    headers = world["headers"][role]
    for method, path, op in wecom_operations(spec):
        content = (op.get("requestBody") or {}).get("content", {})
        if "application/json" not in content or path.startswith("/callbacks"):
            continue
        props = _resolve(spec, content["application/json"].get("schema", {})).get("properties", {})
        url = fill(path, world["ids"])
        base = base_body(world, method, path)
        for field in props:
            for value in HOSTILE_VALUES:
                body = {**base, field: value}
                rec.check(
                    f"{role} {method.upper()} {url} {field}={str(value)[:40]!r}",
                    _send(client, method, url, headers, json=body),
                )
        rec.check(f"{role} {method.upper()} {url} +extra", _send(client, method, url, headers, json={**base, "zz": 1}))
    assert not rec.problems, rec.report()


@pytest.mark.parametrize("role", ROLES)
def test_hostile_whole_bodies_never_500(client: Any, spec: dict[str, Any], world: dict[str, Any], role: str) -> None:
    """Bodies that are not an object, not JSON, not declared as JSON, or nested too deep."""
    rec = Recorder()
    headers = world["headers"][role]
    raw_bodies: list[tuple[str, Any, str | None]] = [
        ("array", b"[1, 2]", "application/json"),
        ("string", b'"x"', "application/json"),
        ("null", b"null", "application/json"),
        ("number", b"1e999", "application/json"),
        ("invalid", b"{not json", "application/json"),
        ("truncated", b'{"name": "', "application/json"),
        ("bad utf8", b'{"name": "\xff\xfe"}', "application/json"),
        ("nan", b'{"name": NaN}', "application/json"),
        ("no type", b'{"name": "x"}', None),
        ("form", b"name=x", "application/x-www-form-urlencoded"),
        ("empty", b"", "application/json"),
        ("deep", b"[" * 5000 + b"]" * 5000, "application/json"),
        ("dup keys", b'{"name": "a", "name": 1}', "application/json"),
    ]
    for method, path, _op in wecom_operations(spec):
        if method == "get" or path.startswith("/callbacks"):
            continue
        url = fill(path, world["ids"])
        for label, data, ctype in raw_bodies:
            kwargs: dict[str, Any] = {"data": data}
            if ctype:
                kwargs["content_type"] = ctype
            rec.check(f"{role} {method.upper()} {url} body={label}", _send(client, method, url, headers, **kwargs))
    assert not rec.problems, rec.report()


@pytest.mark.parametrize("role", ROLES)
def test_hostile_query_params_never_500(client: Any, spec: dict[str, Any], world: dict[str, Any], role: str) -> None:
    """Each query parameter set to each hostile text, and repeated, and an unknown parameter."""
    rec = Recorder()
    headers = world["headers"][role]
    valid = {"start_date": "2024-01-01", "end_date": "2024-01-02", "url": "https://example.com/page"}
    for method, path, op in wecom_operations(spec):
        params = [p["name"] for p in op.get("parameters", []) if p.get("in") == "query"]
        if not params:
            continue
        url = fill(path, world["ids"])
        base = {p: valid[p] for p in params if p in valid}
        for name in params:
            for value in HOSTILE_QUERY:
                query = {**base, name: value}
                rec.check(
                    f"{role} {method.upper()} {url} ?{name}={value[:30]!r}",
                    _send(client, method, url, headers, query_string=query),
                )
            rec.check(
                f"{role} {method.upper()} {url} ?{name} twice",
                _send(client, method, url, headers, query_string=[*base.items(), (name, "1"), (name, "2")]),
            )
        rec.check(
            f"{role} {method.upper()} {url} ?zz", _send(client, method, url, headers, query_string={**base, "zz": "1"})
        )
    assert not rec.problems, rec.report()


@pytest.mark.parametrize("role", ROLES)
def test_bad_path_ids_never_500(client: Any, spec: dict[str, Any], world: dict[str, Any], role: str) -> None:
    """Path ids that exist nowhere, past 32 and 64 bits, answer 404 (or the role's 403)."""
    rec = Recorder()
    headers = world["headers"][role]
    for method, path, _op in wecom_operations(spec):
        names = re.findall(r"\{(\w+)\}", path)
        if not names:
            continue
        for bad in BAD_IDS:
            url = fill(path, {n: bad for n in names})
            body = base_body(world, method, path) if method != "get" else None
            resp = (
                _send(client, method, url, headers, json=body)
                if body is not None
                else _send(client, method, url, headers)
            )
            rec.check(f"{role} {method.upper()} {url}", resp)
            if resp.status_code < 400 and method != "get":
                rec.problems.append(f"{role} {method.upper()} {url} -> {resp.status_code}: a missing id was accepted")
    assert not rec.problems, rec.report()


def test_random_bodies_never_500(client: Any, spec: dict[str, Any], world: dict[str, Any]) -> None:
    """Seeded random combinations: several fields hostile at once, as the group admin and the
    store manager (the roles that get past the role checks everywhere)."""
    rng = random.Random(SEED)
    rec = Recorder()
    ops = [
        (m, p, _resolve(spec, op["requestBody"]["content"]["application/json"].get("schema", {})).get("properties", {}))
        for m, p, op in wecom_operations(spec)
        if "application/json" in (op.get("requestBody") or {}).get("content", {})
    ]
    for _ in range(400):
        method, path, props = rng.choice(ops)
        role = rng.choice(("group_admin", "store_manager"))
        body = base_body(world, method, path)
        for field in rng.sample(sorted(props), k=min(len(props), rng.randint(1, 3))) if props else []:
            body[field] = rng.choice(HOSTILE_VALUES)
        url = fill(path, world["ids"])
        rec.check(
            f"{role} {method.upper()} {url} {body!s:.200}",
            _send(client, method, url, world["headers"][role], json=body),
        )
    assert not rec.problems, rec.report()


def test_no_token_and_owner_token_are_refused_in_format(
    client: Any, spec: dict[str, Any], world: dict[str, Any], member_headers: Any, make_customer: Any
) -> None:
    """Without a token, with a broken one and with an owner's token, every workbench WeCom
    operation answers 401 in the one format (deny by default)."""
    rec = Recorder()
    owner = member_headers(make_customer())
    for method, path, _ in wecom_operations(spec):
        if path.startswith("/callbacks"):
            continue
        url = fill(path, world["ids"])
        for label, headers in (("none", {}), ("garbage", {"Authorization": "Bearer x.y.z"}), ("owner", owner)):
            resp = _send(client, method, url, headers, json={})
            rec.check(f"{label} {method.upper()} {url}", resp)
            if resp.status_code != 401:
                rec.problems.append(f"{label} {method.upper()} {url} -> {resp.status_code}, not 401")
    assert not rec.problems, rec.report()


def test_hostile_tag_marking_never_500_and_changes_nothing(
    client: Any, db_session: Any, sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    """A real relation with the real tag library: every refused marking (hostile tag ids and
    userids, mixed with a real tag) leaves the relation's tags as they were."""
    from sqlalchemy import select

    from backend.wecom.models import WeComFriendTag
    from tests.wecom.helpers import befriend_and_sync_tags, tag_id

    advisor = make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    manager = make_staff(tree.stores[0], "store_manager", userid="mgr0")
    admin = make_staff(tree.group, "group_admin", userid="gadmin")
    friend = befriend_and_sync_tags(client, db_session, sandbox_reset, staff_headers, admin, ZHANG, "wmDemoCustomer001")
    friend_id, url = friend.id, f"/api/workbench/v1/wecom/customers/{friend.customer_id}/tags"
    suv = tag_id(sandbox_reset, "SUV")
    heads = {"advisor": staff_headers(advisor), "manager": staff_headers(manager), "admin": staff_headers(admin)}
    db_session.commit()

    def tags() -> set[str]:
        db_session.expire_all()
        return set(db_session.scalars(select(WeComFriendTag.tag_id).where(WeComFriendTag.friend_id == friend_id)))

    before = tags()
    rec = Recorder()
    bodies: list[dict[str, Any]] = []
    for value in HOSTILE_VALUES:
        bodies += [
            {"add_tag_ids": [suv, value]},
            {"add_tag_ids": [suv], "remove_tag_ids": value},
            {"add_tag_ids": [suv], "userid": value},
            {"add_tag_ids": value},
        ]
    bodies += [
        {"add_tag_ids": [suv], "remove_tag_ids": [suv]},
        {"add_tag_ids": [suv] * 101},
        {"add_tag_ids": [suv], "userid": "ADVISOR.ZHANG"},
        {"add_tag_ids": [suv], "userid": "gadmin"},
        {"add_tag_ids": [suv], "userid": "no.such.user"},
    ]
    accepted = []
    for role, headers in heads.items():
        for body in bodies:
            resp = client.post(url, headers=headers, json=body)
            rec.check(f"{role} POST {url} {body!s:.120}", resp)
            if resp.status_code < 400:
                accepted.append((role, body))
            elif tags() != before:
                rec.problems.append(f"{role} {body!s:.120} -> {resp.status_code} but the tags changed")
                before = tags()
            if resp.status_code < 400:
                before = tags()
    assert not rec.problems, rec.report()
