"""The owner-facing API (/api/app/v1): one blueprint per feature."""

from __future__ import annotations

from importlib import import_module

from backend.platform.api import Api

# One line per feature: each module has a `blp`, registered in this order.
FEATURE_APIS = (
    "backend.customers.api",
    "backend.points.api",
    "backend.payments.api",
    "backend.packages.api",
    "backend.notices.api",
    "backend.consult.api",
    "backend.leads.api",
    "backend.offers.api",
    "backend.events.api",
    "backend.stores.api",
    "backend.booking.api",
)


def register_owner_api(api: Api) -> None:
    from backend.touchpoints import api as _touchpoints_api  # noqa: F401  (adds routes to customers' blp)

    for module in FEATURE_APIS:
        api.register_blueprint(import_module(module).blp)
