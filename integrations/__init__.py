"""WeChat, WeCom and WeChat Pay adapters (`build_gateways`) and their local sandbox.

The adapters are imported lazily so that `integrations.sandbox` can be used without importing
`backend` at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.platform.ports import Gateways

    from .tokens import TokenCache

CONFIG_KEYS = (
    "WECHAT_APP_ID",
    "WECHAT_APP_SECRET",
    "WECHAT_API_BASE",
    "WECOM_CORP_ID",
    "WECOM_AGENT_ID",
    "WECOM_SECRET",
    "WECOM_API_BASE",
    "WECOM_CALLBACK_TOKEN",
    "WECOM_CALLBACK_AES_KEY",
    "WECHATPAY_MCHID",
    "WECHATPAY_APPID",
    "WECHATPAY_PRIVATE_KEY",
    "WECHATPAY_CERT_SERIAL",
    "WECHATPAY_APIV3_KEY",
    "WECHATPAY_PUBLIC_KEY",
    "WECHATPAY_PUBLIC_KEY_ID",
    "WECHATPAY_GATEWAY",
    "WECHATPAY_NOTIFY_URL",
    "UPSTREAM_TIMEOUT",
)


def build_gateways(
    config: Mapping[str, Any], redis_client: Any = None, *, tokens: TokenCache | None = None
) -> Gateways:
    """Adapters for the configured hosts (production or sandbox: same code path).

    Tokens/tickets are shared through Redis when `redis_client` is given. WeChat Pay is None
    when WECHATPAY_MCHID is empty. The WeCom callback token/AES key are passed on in
    `Gateways.extra["wecom_callback"]` for the callback receiver.
    """
    from backend.platform.ports import Gateways

    from .tokens import TokenCache
    from .wechat.client import DEFAULT_API_BASE as WECHAT_DEFAULT
    from .wechat.client import MiniProgramClient
    from .wechatpay.gateway import DEFAULT_GATEWAY, WeChatPayClient
    from .wecom.client import DEFAULT_API_BASE as WECOM_DEFAULT
    from .wecom.client import WeComClient

    timeout = float(config.get("UPSTREAM_TIMEOUT") or 5.0)
    # The refresh lock must outlive a token fetch that runs into the full upstream timeout.
    tokens = tokens or TokenCache(redis_client, lock_ttl=max(15.0, 3 * timeout))
    miniprogram = MiniProgramClient(
        config["WECHAT_APP_ID"],
        config["WECHAT_APP_SECRET"],
        api_base=config.get("WECHAT_API_BASE") or WECHAT_DEFAULT,
        timeout=timeout,
        tokens=tokens,
    )
    wecom = WeComClient(
        config["WECOM_CORP_ID"],
        str(config["WECOM_AGENT_ID"]),
        config["WECOM_SECRET"],
        api_base=config.get("WECOM_API_BASE") or WECOM_DEFAULT,
        timeout=timeout,
        tokens=tokens,
    )
    wechatpay = None
    if config.get("WECHATPAY_MCHID"):
        wechatpay = WeChatPayClient(
            mchid=config["WECHATPAY_MCHID"],
            appid=config.get("WECHATPAY_APPID") or config["WECHAT_APP_ID"],
            private_key=config["WECHATPAY_PRIVATE_KEY"],
            cert_serial_no=config["WECHATPAY_CERT_SERIAL"],
            apiv3_key=config["WECHATPAY_APIV3_KEY"],
            public_key=config["WECHATPAY_PUBLIC_KEY"],
            public_key_id=config["WECHATPAY_PUBLIC_KEY_ID"],
            notify_url=config.get("WECHATPAY_NOTIFY_URL") or None,
            gateway=config.get("WECHATPAY_GATEWAY") or DEFAULT_GATEWAY,
            timeout=timeout,
        )
    return Gateways(
        miniprogram=miniprogram,
        wecom=wecom,
        wechatpay=wechatpay,
        extra={
            "tokens": tokens,
            "wecom_callback": {
                "token": config.get("WECOM_CALLBACK_TOKEN", ""),
                "aes_key": config.get("WECOM_CALLBACK_AES_KEY", ""),
                "corp_id": config["WECOM_CORP_ID"],
            },
        },
    )
