"""The owner-facing API (/api/app/v1): one blueprint, routes contributed by each feature."""

from __future__ import annotations

from backend.platform.api import Api


def register_owner_api(api: Api) -> None:
    from backend.consult.api import blp as consult_blp
    from backend.customers.api import blp
    from backend.notices.api import blp as notices_blp
    from backend.packages.api import blp as packages_blp
    from backend.payments.api import blp as payments_blp
    from backend.points.api import blp as points_blp
    from backend.touchpoints import api as _touchpoints_api  # noqa: F401  (adds routes to blp)

    for feature_blp in (blp, points_blp, payments_blp, packages_blp, notices_blp, consult_blp):
        api.register_blueprint(feature_blp)
    from backend.leads.api import blp as leads_blp

    api.register_blueprint(leads_blp)
