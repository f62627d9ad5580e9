"""WeCom adapter (wechatpy 1.8.18, `wechatpy.enterprise`)."""

from .client import WeComClient

__all__ = ["WeComClient"]
