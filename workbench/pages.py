"""The H5 pages of the workbench that WeCom text cards link to: `/workbench/leads/<id>`,
`/workbench/consult/<id>`, `/workbench/handovers/<id>`.

Each page is the same empty shell: it carries no data, only where to log in (WeCom OAuth2,
snsapi_base) and which API object to show. `static/workbench/workbench.js` logs in through the
existing `/api/workbench/v1/auth/login` and reads and writes through the workbench API with the
staff member's Bearer token, so every scope rule stays the API's. No inline script: the config
goes in `data-` attributes, and a Content-Security-Policy allows scripts from this origin only.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, render_template

from backend.platform.api import public

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


@blp.get("/workbench/<any(leads, consult, handovers):kind>/<int:item_id>")
@public
def page(kind: str, item_id: int) -> Any:
    gateway = current_app.extensions["dealerloop.gateways"].wecom  # the primary app: the login's default
    html = render_template(
        "workbench/page.html",
        kind=kind,
        item_id=item_id,
        title=TITLES[kind],
        api_base=API_BASE,
        authorize_url=current_app.config["WECOM_OAUTH_BASE"].rstrip("/") + "/connect/oauth2/authorize",
        corp_id=gateway.corp_id,
        agent_id=gateway.agent_id,
    )
    return html, 200, HEADERS
