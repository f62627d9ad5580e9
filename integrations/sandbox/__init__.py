"""Strict local fakes of the WeChat mini-program API, the WeCom API and WeChat Pay APIv3.

They implement the upstream protocols (signatures verified, payloads encrypted, one-time codes,
error codes) so that the real wechatpy / wechatpayv3 adapters run unchanged against them; only
the base URL differs. Mount `Sandbox.mounts()` in the app (DispatcherMiddleware) or serve them
with `SandboxServer` on 127.0.0.1. Control endpoints live under `/_sandbox/` of each app.

This package does not import `backend`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .credentials import CREDENTIAL_KEYS, dev_credentials, platform_private_key_for
from .server import SandboxServer
from .state import SandboxState
from .wechat import create_wechat_app
from .wechatpay import create_wechatpay_app
from .wecom import create_wecom_app

__all__ = [
    "CREDENTIAL_KEYS",
    "Sandbox",
    "SandboxServer",
    "SandboxState",
    "create_sandbox",
    "dev_credentials",
]


@dataclass
class Sandbox:
    state: SandboxState
    wechat_app: Any
    wecom_app: Any
    wechatpay_app: Any

    def mounts(self, prefix: str = "/sandbox") -> dict[str, Any]:
        return {
            f"{prefix}/wechat": self.wechat_app,
            f"{prefix}/wecom": self.wecom_app,
            f"{prefix}/wechatpay": self.wechatpay_app,
        }


def create_sandbox(
    credentials: dict[str, str],
    *,
    platform_private_key: str | None = None,
    clock: Callable[[], float] = time.time,
    seed: bool = True,
    trusted_hosts: Iterable[str] = (),
) -> Sandbox:
    """Build the three apps over one fresh state.

    `platform_private_key` (PEM) signs WeChat Pay answers; by default it is the one generated
    with `dev_credentials()` for `credentials["WECHATPAY_PUBLIC_KEY_ID"]`. `trusted_hosts`: the
    WeCom app's trusted domain, the hosts its OAuth2 authorize page may send a member back to
    (none by default: every redirect is refused, as WeCom refuses a domain nobody registered).
    """
    missing = [k for k in CREDENTIAL_KEYS if not credentials.get(k)]
    if missing:
        raise ValueError(f"sandbox credentials lack {', '.join(missing)}")
    key = platform_private_key or platform_private_key_for(credentials["WECHATPAY_PUBLIC_KEY_ID"])
    if key is None:
        raise ValueError("unknown WECHATPAY_PUBLIC_KEY_ID: pass platform_private_key= for custom credentials")
    state = SandboxState(credentials, platform_private_key=key, clock=clock, seed=seed, trusted_hosts=trusted_hosts)
    return Sandbox(
        state=state,
        wechat_app=create_wechat_app(state),
        wecom_app=create_wecom_app(state),
        wechatpay_app=create_wechatpay_app(state),
    )
