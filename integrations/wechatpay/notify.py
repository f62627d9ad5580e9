"""WeChat Pay notifications (/callbacks/wechatpay/...): verify, decrypt, apply once. Issue 5."""

from backend.platform.api import Blueprint

blp = Blueprint(
    "wechatpay_notify", __name__, url_prefix="/callbacks", audience=None, description="WeChat Pay notifications"
)
