"""The H5 pages of the workbench that WeCom text cards link to: `/workbench/leads/<id>`,
`/workbench/consult/<id>`, `/workbench/handovers/<id>`.

Each page is the same empty shell: it carries no data, only where to log in (WeCom OAuth2,
snsapi_base, with the app the card came through: the link's `app` key, else the primary app)
and which API object to show. `static/workbench/workbench.js` logs in through the
existing `/api/workbench/v1/auth/login` and reads and writes through the workbench API with the
staff member's Bearer token, so every scope rule stays the API's. No inline script: the config
goes in `data-` attributes, and a Content-Security-Policy allows scripts from this origin only.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, render_template, request

from backend.platform.api import public
from backend.platform.errors import AppError, register_messages
from backend.platform.ports import WeComGateway
from backend.wecom import service as wecom_service

blp = Blueprint(
    "wb_pages",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/workbench/static",
)

# The page kinds the cards link to, with their titles.
TITLES = {"leads": "线索详情", "consult": "在线咨询", "handovers": "客户交接"}
API_BASE = "/api/workbench/v1"
# Everything from this origin only; the page's data arrives by fetch() and is written as text.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    # The address may still carry the OAuth code when the page loads: never sent on as a referrer.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


register_messages({"workbench.app_unknown": ("链接中的企业微信应用不存在", "The link names no configured WeCom app")})


def _linked_app() -> WeComGateway:
    """The app the card was sent through, named by the link's `app` key: its members can only
    log in through it (its corp, its agent). A link without one (sent before links named their
    app) means the primary app; a key no configured app has is a dead link: 404."""
    keys = request.args.getlist("app")
    if not keys:
        return current_app.extensions["dealerloop.gateways"].wecom
    gateway = wecom_service.app_by_key(keys[0]) if len(keys) == 1 else None
    if gateway is None:
        raise AppError("workbench.app_unknown", 404, errors={"app": ["no configured WeCom app has this key"]})
    return gateway


@blp.get("/workbench/<any(leads, consult, handovers):kind>/<int:item_id>")
@public
def page(kind: str, item_id: int) -> Any:
    gateway = _linked_app()
    oauth_base = gateway.oauth_base or current_app.config["WECOM_OAUTH_BASE"]
    html = render_template(
        "workbench/page.html",
        kind=kind,
        item_id=item_id,
        title=TITLES[kind],
        api_base=API_BASE,
        authorize_url=oauth_base.rstrip("/") + "/connect/oauth2/authorize",
        corp_id=gateway.corp_id,
        agent_id=gateway.agent_id,
        app_key=wecom_service.app_key(gateway),
    )
    return html, 200, HEADERS
