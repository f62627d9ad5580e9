"""the corners of the WeCom workbench API — material uploads with hostile forms, paths
and methods that do not exist, bodies over the size limit, staff without a role, a resigned
advisor's still-unexpired token — answer in the one error format, never a 500, and deny by
default."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import pytest
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from tests.wecom.helpers import MATERIALS, SAMPLE, ZHANG
from tests.wecom.test_api_hostile_input import error_shape_problem
from tests.wecom.test_api_store_scope import store_objects, visible

WB = "/api/workbench/v1/wecom"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any, db_session: Any) -> dict[str, Any]:
    adv = make_staff(tree.stores[0], "sales_advisor", userid=ZHANG, name="张顾问")
    mgr = make_staff(tree.stores[0], "store_manager", userid="mgr0")
    admin = make_staff(tree.group, "group_admin", userid="gadmin")
    norole = make_staff(tree.stores[0], userid="norole0")
    ids = store_objects(db_session, sandbox_reset.credentials["WECOM_CORP_ID"], tree.stores[0], adv, "N0")
    w = {
        "store_id": tree.stores[0].id,
        "ids": ids,
        "h": {
            "advisor": staff_headers(adv),
            "manager": staff_headers(mgr),
            "admin": staff_headers(admin),
            "norole": staff_headers(norole),
        },
        "adv": adv,
    }
    db_session.commit()
    return w


def _multipart(form: dict[str, Any]) -> tuple[bytes, str]:
    boundary, body = encode_multipart(form)
    return body, f"multipart/form-data; boundary={boundary}"


def _file(content: bytes, name: str = "a.png") -> FileStorage:
    return FileStorage(BytesIO(content), filename=name)


def test_hostile_material_uploads_are_4xx_in_format(client: Any, world: dict[str, Any]) -> None:
    png = SAMPLE["image"]
    store = str(world["store_id"])
    forms: dict[str, Any] = {
        "no file": {"kind": "image", "store_id": store},
        "no kind": {"file": _file(png), "store_id": store},
        "bad kind": {"kind": "exe", "file": _file(png), "store_id": store},
        "store huge": {"kind": "image", "file": _file(png), "store_id": "99999999999999999999"},
        "store text": {"kind": "image", "file": _file(png), "store_id": "abc"},
        "store negative": {"kind": "image", "file": _file(png), "store_id": "-1"},
        "store empty": {"kind": "image", "file": _file(png), "store_id": ""},
        "name long": {"kind": "image", "file": _file(png), "store_id": store, "name": "名" * 500},
        "name empty": {"kind": "image", "file": _file(png), "store_id": store, "name": ""},
        "empty file": {"kind": "image", "file": _file(b""), "store_id": store},
        "not a png": {"kind": "image", "file": _file(b"GIF89a" + b"\x00" * 64), "store_id": store},
        "mp4 as image": {"kind": "image", "file": _file(SAMPLE["video"]), "store_id": store},
        "file name long": {"kind": "file", "file": _file(b"x" * 100, "a" * 1000 + ".pdf"), "store_id": store},
        "unknown field": {"kind": "image", "file": _file(png), "store_id": store, "zz": "1"},
        "two files": {"kind": "image", "file": [_file(png), _file(png)], "store_id": store},
    }
    problems: dict[str, Any] = {}
    for role in ("manager", "admin"):
        for label, form in forms.items():
            for value in form.values():
                for f in value if isinstance(value, list) else [value]:
                    if isinstance(f, FileStorage):
                        f.stream.seek(0)
            body, ctype = _multipart(form)
            resp = client.post(MATERIALS, headers=world["h"][role], data=body, content_type=ctype)
            if resp.status_code >= 500 or (resp.status_code >= 400 and error_shape_problem(resp)):
                problems[f"{role} {label}"] = (resp.status_code, resp.get_data(as_text=True)[:200])
        for label, (data, ctype) in {
            "json": (b'{"kind": "image"}', "application/json"),
            "no boundary": (b"--x\r\n", "multipart/form-data"),
            "truncated": (
                b'--b\r\nContent-Disposition: form-data; name="kind"\r\n\r\nimage',
                "multipart/form-data; boundary=b",
            ),
        }.items():
            resp = client.post(MATERIALS, headers=world["h"][role], data=data, content_type=ctype)
            if resp.status_code >= 500 or resp.status_code < 400 or error_shape_problem(resp):
                problems[f"{role} {label}"] = (resp.status_code, resp.get_data(as_text=True)[:200])
    assert problems == {}


def test_unknown_paths_methods_and_oversize_bodies_answer_in_format(client: Any, world: dict[str, Any]) -> None:
    h = world["h"]["admin"]
    cid = world["ids"]["channel_id"]
    cases = {
        "unknown path": ("get", f"{WB}/nope", None),
        "negative id": ("get", f"{WB}/channels/-1", None),
        "text id": ("get", f"{WB}/channels/abc", None),
        "trailing slash": ("get", f"{WB}/channels/", None),
        "put channels": ("put", f"{WB}/channels", None),
        "delete templates": ("delete", f"{WB}/welcome-templates", None),
        "put channel": ("put", f"{WB}/channels/{cid}", None),
        "get replay": ("get", f"{WB}/events/1/replay", None),
        "oversize json": ("post", f"{WB}/welcome-templates", {"name": "x", "text": "y" * (2 * 1024 * 1024)}),
        "oversize patch": ("patch", f"{WB}/channels/{cid}", {"name": "y" * (2 * 1024 * 1024)}),
    }
    problems = {}
    for label, (method, url, body) in cases.items():
        resp = client.open(url, method=method.upper(), headers=h, json=body)
        if resp.status_code < 400 or resp.status_code >= 500 or error_shape_problem(resp):
            problems[label] = (resp.status_code, resp.get_data(as_text=True)[:200])
    assert problems == {}


def test_staff_without_a_role_reach_nothing(client: Any, world: dict[str, Any]) -> None:
    """Deny by default: a staff member of store 0 with no role sees none of the store's WeCom
    objects (nor are they a party to them)."""
    assert visible(client, world["h"]["norole"], world["ids"]) == {}


def test_a_resigned_advisors_token_stops_at_once(client: Any, world: dict[str, Any], db_session: Any) -> None:
    from backend.org.models import Staff

    headers = world["h"]["manager"]
    mgr = db_session.scalars(__import__("sqlalchemy").select(Staff).where(Staff.wecom_userid == "mgr0")).one()
    mgr.status = "resigned"
    db_session.commit()
    problems = {}
    for method, url in (("get", f"{WB}/channels"), ("post", f"{WB}/handovers"), ("get", f"{WB}/lost-customers")):
        resp = client.open(url, method=method.upper(), headers=headers, json={})
        if resp.status_code != 401 or error_shape_problem(resp):
            problems[url] = (resp.status_code, resp.get_json())
    assert problems == {}
