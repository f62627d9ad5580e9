"""Inbound callbacks from WeCom and WeChat Pay: public endpoints, each verifying its own signature."""

from __future__ import annotations

from typing import Any

from backend.platform.api import Api


def register_callbacks(api: Api) -> None:
    from integrations.wechatpay.notify import blp as wechatpay_blp
    from integrations.wecom.callbacks import blp as wecom_blp

    api.register_blueprint(wecom_blp)
    api.register_blueprint(wechatpay_blp)


def install_callback_lanes(app: Any) -> None:
    """WSGI layers that answer the hottest callbacks before Flask (integrations/wecom/callbacks.py)."""
    from integrations.wecom.callbacks import install_lane

    install_lane(app)
