"""The advisor workbench API (/api/workbench/v1) for WeCom sidebar pages and managers' tools,
and the H5 pages WeCom cards open (/workbench/..., `workbench.pages`)."""

from __future__ import annotations

from importlib import import_module

from flask import Flask

from backend.platform.api import Api

# One line per feature: each module has a `blp`, registered in this order.
FEATURE_APIS = (
    "workbench.auth.api",
    "workbench.customers.api",
    "workbench.org.api",
    "workbench.wecom.api",
    "workbench.points.api",
    "workbench.payments.api",
    "workbench.packages.api",
    "workbench.wecom.ops_api",
    "workbench.leads.api",
    "workbench.segments.api",
    "workbench.campaigns.api",
    "workbench.consult.api",
    "workbench.offers.api",
    "workbench.events.api",
    "workbench.stores.api",
    "workbench.booking.api",
)


def register_workbench(api: Api) -> None:
    for module in FEATURE_APIS:
        api.register_blueprint(import_module(module).blp)


def register_pages(app: Flask) -> None:
    from workbench.pages import blp

    app.register_blueprint(blp)
