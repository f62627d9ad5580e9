"""App platform: health endpoints, OpenAPI/docs, the one error format, bad input."""

from __future__ import annotations

from typing import Any

import pytest


def test_healthz_and_readyz(client: Any) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"database": "ok", "migrations": "ok"}


def test_readyz_reports_migrations_behind(client: Any, db_session: Any) -> None:
    from sqlalchemy import text

    db_session.execute(text("UPDATE alembic_version SET version_num = 'old'"))
    db_session.commit()
    body = client.get("/readyz")
    assert body.status_code == 503
    assert body.get_json()["status"] == "not_ready"
    assert "head is" in body.get_json()["checks"]["migrations"]


def test_openapi_documents_every_operation(client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    methods = {"get", "post", "put", "patch", "delete"}
    operations = [
        (path, method, op) for path, item in spec["paths"].items() for method, op in item.items() if method in methods
    ]
    assert len(operations) > 15
    for path, method, op in operations:
        where = f"{method.upper()} {path}"
        assert "default" in op["responses"], f"{where} documents no error response"
        success = [code for code in op["responses"] if code.startswith("2")]
        assert success, f"{where} documents no success response"
        if method in ("post", "put", "patch") and not path.endswith("/reverse"):
            assert "requestBody" in op, f"{where} has no request schema"
        for code in success:
            if code != "204":
                assert "content" in op["responses"][code], f"{where} {code} has no schema"
        # Security: either the global bearer requirement or an explicit empty list (public).
        if "security" in op:
            assert op["security"] == [], where


def test_docs_page_and_assets_are_served_locally(client: Any) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert b"/docs-assets/swagger-ui-bundle.js" in page.data
    asset = client.get("/docs-assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.data) > 100_000
    asset.close()


def _assert_error(resp: Any, status: int, code: str) -> dict:
    body = resp.get_json()
    assert resp.status_code == status, body
    assert body["code"] == code
    assert body["status"] == status
    assert body["message"]
    return body


def test_404_and_405_use_the_error_format(client: Any) -> None:
    _assert_error(client.get("/no/such/path"), 404, "request.not_found")
    _assert_error(client.delete("/healthz"), 405, "request.method_not_allowed")


def test_owner_messages_are_chinese_workbench_may_be_english(client: Any) -> None:
    owner = client.get("/api/app/v1/me", headers={"Accept-Language": "en"}).get_json()
    assert owner["message"] == "请先登录"
    staff = client.get("/api/workbench/v1/me", headers={"Accept-Language": "en-US"}).get_json()
    assert staff["message"] == "Authentication required"


def test_malformed_json_is_400(client: Any) -> None:
    resp = client.post("/api/app/v1/auth/login", data="{not json", content_type="application/json")
    _assert_error(resp, 400, "request.malformed_json")
    # nested past the interpreter's recursion limit: unreadable too, not a 500
    deep = client.post("/api/app/v1/auth/login", data="[" * 100_000 + "]" * 100_000, content_type="application/json")
    _assert_error(deep, 400, "request.malformed_json")


@pytest.mark.parametrize(
    ("body", "field", "expected"),
    [
        ({"code": 123}, "code", "Not a valid string."),
        ({}, "code", "Missing data for required field."),
        ({"code": "abc", "extra": 1}, "extra", "Unknown field."),
        ({"code": ""}, "code", None),
    ],
)
def test_validation_errors_are_422_with_the_field(client: Any, body: dict, field: str, expected: str | None) -> None:
    err = _assert_error(client.post("/api/app/v1/auth/login", json=body), 422, "request.invalid")
    assert field in err["errors"]["json"]
    if expected:
        assert expected in err["errors"]["json"][field]


def test_oversize_body_is_413(client: Any, app: Any) -> None:
    big = "x" * (app.config["MAX_CONTENT_LENGTH"] + 10)
    resp = client.post("/api/app/v1/auth/login", data=big, content_type="application/json")
    _assert_error(resp, 413, "request.too_large")


def test_unexpected_error_is_500_in_the_error_format_and_rolls_back(
    client: Any, make_customer: Any, member_headers: Any, monkeypatch: Any, db_session: Any
) -> None:
    from sqlalchemy import func, select

    from backend.customers import service
    from backend.customers.models import Car

    customer = make_customer()

    def explode(session: Any, actor: Any, data: Any) -> Any:
        session.add(Car(customer_id=actor.customer_id, vin="LFV2A21K7G3000001"))
        session.flush()
        raise RuntimeError("boom after a write")

    monkeypatch.setattr(service, "add_car", explode)
    resp = client.post("/api/app/v1/me/cars", json={"vin": "LFV2A21K7G3000001"}, headers=member_headers(customer))
    body = _assert_error(resp, 500, "internal_error")
    assert "boom" not in body["message"]
    assert db_session.scalar(select(func.count()).select_from(Car)) == 0


def test_a_duplicate_key_a_service_lets_escape_is_409_and_rolls_back(
    client: Any, make_customer: Any, member_headers: Any, monkeypatch: Any, db_session: Any
) -> None:
    """`unique_savepoint` raises DuplicateKey; a service that meets one it did not foresee (a
    random code colliding) answered 500. It is the same conflict as an IntegrityError."""
    from sqlalchemy import func, select

    from backend.customers import service
    from backend.customers.models import Car
    from backend.platform.db import unique_savepoint

    customer = make_customer()

    def collide(session: Any, actor: Any, data: Any) -> Any:
        session.add(Car(customer_id=actor.customer_id, vin="LFV2A21K7G3000001"))
        session.flush()
        with unique_savepoint(session):
            session.add(Car(customer_id=actor.customer_id, vin="LFV2A21K7G3000001"))

    monkeypatch.setattr(service, "add_car", collide)
    resp = client.post("/api/app/v1/me/cars", json={"vin": "LFV2A21K7G3000001"}, headers=member_headers(customer))
    _assert_error(resp, 409, "request.conflict")
    assert db_session.scalar(select(func.count()).select_from(Car)) == 0


def test_request_id_is_echoed(client: Any) -> None:
    resp = client.get("/healthz", headers={"X-Request-ID": "abc123"})
    assert resp.headers["X-Request-ID"] == "abc123"
    assert len(client.get("/healthz").headers["X-Request-ID"]) == 32


@pytest.mark.redis
def test_readyz_checks_redis_when_configured(client: Any, app: Any, monkeypatch: Any, redis_url: str) -> None:
    import redis

    monkeypatch.setitem(app.extensions, "dealerloop.redis", redis.Redis.from_url(redis_url))
    assert client.get("/readyz").get_json()["checks"]["redis"] == "ok"
    monkeypatch.setitem(app.extensions, "dealerloop.redis", redis.Redis(port=1, socket_connect_timeout=0.2))
    down = client.get("/readyz")
    # Redis down degrades the node but keeps it in the load balancer: requests still work
    # (their jobs wait in the outbox), so a Redis outage must not take every web node out
    assert down.status_code == 200, down.get_json()
    assert down.get_json()["status"] == "degraded" and down.get_json()["checks"]["redis"].startswith("error")


def test_each_request_gets_a_fresh_session_and_g(
    client: Any, app: Any, tree: Any, make_staff: Any, staff_headers: Any
) -> None:
    from flask import g

    from backend.platform.db import db

    seen: list[Any] = []

    def _spy(_exc: Any) -> None:  # runs inside each request, before the session is removed
        seen.append((db.session(), g.get("actor")))  # keep the object: no id reuse

    app.teardown_request_funcs.setdefault(None, []).append(_spy)
    try:
        h = staff_headers(make_staff(tree.stores[0], "store_manager"))
        client.get("/api/workbench/v1/me", headers=h)
        client.get("/healthz")
    finally:
        app.teardown_request_funcs[None].remove(_spy)
    (s1, actor1), (s2, actor2) = seen
    assert actor1 is not None and actor2 is None  # g does not leak between requests
    assert s1 is not s2  # the session was removed at the end of the first request
