"""More than one WeCom app (dealer groups run several corps or self-built apps).

The primary app comes from the WECOM_* settings. Further apps come from `WECOM_EXTRA_APPS`: a
list (or its JSON text) of objects with `corp_id`, `agent_id`, `secret`, `token`, `aes_key` and
optionally `api_base`. Each app gets its own client (its own secret, its own cached token) and
its own callback token / EncodingAESKey; the callback receiver picks the app by the envelope's
`ToUserName` (corp) and `AgentID`, the handlers by the stored event's corp and agent.

`oauth_base` (optional) is the app's OAuth2 authorize host when it is not WECOM_OAUTH_BASE:
WeCom serves every corp from open.weixin.qq.com, so production leaves it out; a sandbox of the
app's own (tests, a second corp in development) plays that page for its corp.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .client import DEFAULT_API_BASE, WeComClient

REQUIRED = ("corp_id", "agent_id", "secret", "token", "aes_key")


def extra_app_configs(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    raw = config.get("WECOM_EXTRA_APPS") or []
    if isinstance(raw, str):
        raw = json.loads(raw) if raw.strip() else []
    if not isinstance(raw, list):
        raise ValueError("WECOM_EXTRA_APPS must be a list of app objects")
    apps = []
    for i, item in enumerate(raw):
        missing = [k for k in REQUIRED if not (isinstance(item, dict) and item.get(k))]
        if missing:
            raise ValueError(f"WECOM_EXTRA_APPS[{i}] lacks {', '.join(missing)}")
        apps.append({**item, "agent_id": str(item["agent_id"])})
    return apps


def add_wecom_apps(gateways: Any, config: Mapping[str, Any]) -> list[WeComClient]:
    """Build the extra apps' clients into `gateways.extra["wecom_apps"]` and their callback
    credentials into `gateways.extra["wecom_callback_more"]`."""
    timeout = float(config.get("UPSTREAM_TIMEOUT") or 5.0)
    clients = []
    callbacks = []
    for app in extra_app_configs(config):
        clients.append(
            WeComClient(
                app["corp_id"],
                app["agent_id"],
                app["secret"],
                api_base=app.get("api_base") or config.get("WECOM_API_BASE") or DEFAULT_API_BASE,
                oauth_base=app.get("oauth_base") or "",
                timeout=timeout,
                tokens=gateways.extra.get("tokens"),
            )
        )
        callbacks.append(
            {"corp_id": app["corp_id"], "agent_id": app["agent_id"], "token": app["token"], "aes_key": app["aes_key"]}
        )
    gateways.extra["wecom_apps"] = clients
    gateways.extra["wecom_callback_more"] = callbacks
    return clients
