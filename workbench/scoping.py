"""Scope before anything else: a view decorator for staff endpoints with an id in the path."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from backend.org.models import OrgKind, OrgUnit
from backend.org.scope import get_scoped_or_404
from backend.platform.actors import StaffActor
from backend.platform.api import current_staff
from backend.platform.db import db
from backend.platform.errors import AppError


def scope_first(resource: str, param: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Look the path's id up through the actor's data scope before the body is validated or the
    role checked, so an id from another scope always answers 404 (never 422 or 403, which would
    tell that it exists). Place it above `@role_required` and `@blp.arguments`."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            get_scoped_or_404(db.session(), current_staff(), resource, kwargs[param])
            return fn(*args, **kwargs)

        return wrapper

    return deco


def require_store_in_scope(actor: StaffActor, store_id: int | None) -> None:
    """For creating a store's object (mall item, package): staff with a store-level scope name
    one of their stores; only everyone-scope staff create group-wide ones (store_id None)."""
    if actor.scope.store_ids is not None and (store_id is None or store_id not in actor.scope.store_ids):
        raise AppError("request.invalid", 422, errors={"json": {"store_id": ["a store in your scope"]}})
    # Everyone-scope staff may name any store, but a store: an id of no org unit reached the
    # insert (its foreign key answered a misleading 409 "conflict, retry"), and the id of a
    # region or division was taken as a store's.
    if (
        store_id is not None
        and db.session().scalar(select(OrgUnit.id).where(OrgUnit.id == store_id, OrgUnit.kind == OrgKind.STORE)) is None
    ):
        raise AppError("request.invalid", 422, errors={"json": {"store_id": ["not a store"]}})
