"""The advisor workbench API (/api/workbench/v1) for WeCom sidebar pages and managers' tools."""

from __future__ import annotations

from backend.platform.api import Api


def register_workbench(api: Api) -> None:
    from workbench.auth.api import blp as auth_blp
    from workbench.campaigns.api import blp as campaigns_blp
    from workbench.consult.api import blp as consult_blp
    from workbench.customers.api import blp as customers_blp
    from workbench.org.api import blp as org_blp
    from workbench.packages.api import blp as packages_blp
    from workbench.payments.api import blp as payments_blp
    from workbench.points.api import blp as points_blp
    from workbench.segments.api import blp as segments_blp
    from workbench.wecom.api import blp as wecom_blp
    from workbench.wecom.ops_api import blp as wecom_ops_blp

    for blp in (auth_blp, customers_blp, org_blp, wecom_blp, points_blp, payments_blp, packages_blp):
        api.register_blueprint(blp)
    api.register_blueprint(wecom_ops_blp)
    from workbench.leads.api import blp as leads_blp

    api.register_blueprint(leads_blp)
    api.register_blueprint(segments_blp)
    api.register_blueprint(campaigns_blp)
    api.register_blueprint(consult_blp)
