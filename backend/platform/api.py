"""Our layer over flask-smorest: every resource imports `Api`, `Blueprint`, `Schema` from here.

Blueprints are deny-by-default: each one names the audience whose bearer token it requires
("owner" for the mini-program API, "staff" for the workbench). A view that must be reachable
without a token says so with `@public`, and every view states its scope decision with
`@scoped(...)` / `@self_only` / `@public` — a test walks the URL map and fails on a view that
has none.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import flask_smorest
from flask import Flask, current_app, g, request
from marshmallow import EXCLUDE, RAISE, ValidationError, fields, pre_load
from marshmallow import Schema as MaSchema
from webargs.flaskparser import FlaskParser

from backend.platform.actors import Actor, MemberActor, StaffActor
from backend.platform.db import commit, db, rollback
from backend.platform.errors import AppError, ErrorSchema, register_error_handlers
from backend.platform.logs import actor_id_var, request_id_var
from backend.platform.tokens import verify_access_token

SCOPE_ATTR = "_dealerloop_scope"


class Schema(MaSchema):
    """Input schemas refuse unknown fields (a typo must not be silently ignored), and a number
    with a fraction where an integer is expected (marshmallow's Integer would truncate 1.5 to 1:
    a wrong id, quantity or amount, silently)."""

    class Meta:
        unknown = RAISE
        ordered = True

    @pre_load
    def _refuse_fractions(self, data: Any, **kwargs: Any) -> Any:
        if not isinstance(data, dict):
            return data  # marshmallow refuses it with its own message
        errors = {}
        for name, field in self.load_fields.items():
            key = field.data_key or name
            if key in data and _has_fraction(field, data[key]):
                errors[key] = ["Not a valid integer."]
            elif key in data and not _encodable(data[key]):
                # JSON may carry a lone UTF-16 surrogate ("\ud800"): no UTF-8 text, so the
                # database driver (or WeCom) would fail on it — refused here, as bad input.
                errors[key] = ["Not valid text (a lone surrogate)."]
        if errors:
            raise ValidationError(errors)
        return data


def _encodable(value: Any) -> bool:
    """Whether every string in the value (keys of objects too, at any depth) is UTF-8 text."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_encodable(item) for item in value)
    return True


def _has_fraction(field: fields.Field, value: Any) -> bool:
    if isinstance(field, fields.Integer):
        return isinstance(value, float) and not value.is_integer()
    if isinstance(field, fields.List) and isinstance(value, list):
        return any(_has_fraction(field.inner, item) for item in value)
    return False


class OutputSchema(MaSchema):
    class Meta:
        unknown = EXCLUDE
        ordered = True


class DealerloopFlask(Flask):
    """One unit of work per request: the view runs, then the session commits once; any error
    rolls back. Committing here (after serialisation, before the response leaves) means a
    failed commit is still reported to the client, in the one error format."""

    def dispatch_request(self) -> Any:  # type: ignore[override]
        session = db.session()
        try:
            rv = super().dispatch_request()
        except AppError:
            if session.info.pop("commit_despite_error", False):
                commit(session)
            else:
                rollback(session)
            raise
        except BaseException:
            rollback(session)
            raise
        status = getattr(rv, "status_code", 200)
        if status < 400:
            commit(session)
        else:
            rollback(session)
        return rv


class Api(flask_smorest.Api):
    ERROR_SCHEMA = ErrorSchema
    DEFAULT_ERROR_RESPONSE_NAME = "DEFAULT_ERROR"

    def _register_error_handlers(self) -> None:  # one format, ours, for every error
        register_error_handlers(self._app)


class _Parser(FlaskParser):
    """webargs' parser, with JSON nested past the interpreter's recursion limit answered as
    malformed JSON (400) like any other unreadable body, instead of a RecursionError (500)."""

    def _raw_load_json(self, req: Any) -> Any:
        try:
            return super()._raw_load_json(req)
        except RecursionError as exc:
            # A non-empty `doc`: webargs takes an empty one for "no body at all".
            raise json.JSONDecodeError("nested too deeply", "[", 0) from exc


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = _Parser()

    def __init__(self, *args: Any, audience: str | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.audience = audience
        if audience is not None:
            self.before_request(self._authenticate)

    def _authenticate(self) -> None:
        view = current_app.view_functions.get(request.endpoint or "")
        view_class = getattr(view, "view_class", None)
        handler = getattr(view_class, request.method.lower(), None) if view_class else view
        if getattr(handler, "_dealerloop_public", False) or getattr(view, "_dealerloop_public", False):
            return
        g.actor = authenticate(self.audience)


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AppError("auth.token_missing", 401)
    return token.strip()


def authenticate(audience: str | None) -> Actor:
    token = _bearer()
    claims = verify_access_token(current_app.config["SECRET_KEY"], token, audience or "")
    subject = int(claims["sub"])
    if audience == "owner":
        from backend.customers.service import load_member_actor

        actor: Actor = load_member_actor(db.session(), subject, claims)
    else:
        from backend.org.service import load_staff_actor

        actor = load_staff_actor(db.session(), subject)
    actor_id_var.set(f"{actor.kind}:{actor.ident}")
    # Whose retries these are: the token's subject, which a client keeps across its retries,
    # not the customer it resolves to, which a staff merge in between changes (a retried create
    # would then run again for the survivor instead of replaying the first answer).
    g.idempotency_owner = f"{actor.kind}:{subject}"
    return actor


def current_actor() -> Actor:
    actor = g.get("actor")
    if actor is None:
        raise AppError("auth.token_missing", 401)
    return actor


def current_member() -> MemberActor:
    actor = current_actor()
    if not isinstance(actor, MemberActor):
        raise AppError("auth.wrong_audience", 401)
    return actor


def current_staff() -> StaffActor:
    actor = current_actor()
    if not isinstance(actor, StaffActor):
        raise AppError("auth.wrong_audience", 401)
    return actor


# ---------------------------------------------------------------------------------------------
# Scope decisions, declared on every view (checked by tests/test_scope_enumeration.py).


def _mark(decision: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        setattr(fn, SCOPE_ATTR, decision)
        return fn

    return deco


def public(fn: Callable[..., Any]) -> Callable[..., Any]:
    """No token needed (login, health). Documented with an empty security list."""
    fn._dealerloop_public = True  # type: ignore[attr-defined]
    setattr(fn, SCOPE_ATTR, "public")
    doc = getattr(fn, "_apidoc", {})
    doc.setdefault("manual_doc", {})["security"] = []
    fn._apidoc = doc  # type: ignore[attr-defined]
    return fn


self_only = _mark("self")  # the actor's own data (owner's profile, cars, feed; staff's own info)


def scoped(resource: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Objects of `resource` are looked up through the actor's data scope (404 outside it)."""
    return _mark(f"scoped:{resource}")


def role_required(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Staff views limited to some roles; others get 403 auth.forbidden."""
    import functools

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_staff().has_role(*roles):
                raise AppError("auth.forbidden", 403)
            return fn(*args, **kwargs)

        return wrapper

    return deco


def init_api(app: Flask) -> Api:
    app.config.setdefault("API_TITLE", "dealerloop")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", "/")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    app.config.setdefault("OPENAPI_SWAGGER_UI_PATH", "docs")
    app.config.setdefault("OPENAPI_SWAGGER_UI_URL", "/docs-assets/")
    api = Api(
        spec_kwargs={
            "info": {
                "description": "dealerloop: owner mini-program API (/api/app/v1) "
                "and advisor workbench (/api/workbench/v1)"
            },
            "security": [{"bearerAuth": []}],
            "components": {
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
            },
        }
    )
    api.init_app(app)
    return api


def request_id() -> str | None:
    return request_id_var.get()
