"""WeChat Pay APIv3 adapter (wechatpayv3 2.0.4, public-key mode)."""

from .gateway import NotificationError, WeChatPayClient

__all__ = ["NotificationError", "WeChatPayClient"]
