"""WeChat mini-program adapter (wechatpy 1.8.18)."""

from .client import MiniProgramClient

__all__ = ["MiniProgramClient"]
