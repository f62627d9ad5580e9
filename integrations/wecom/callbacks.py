"""WeCom callback receiver (/callbacks/wecom): verify, decrypt, store raw, acknowledge. Issue 3."""

from backend.platform.api import Blueprint

blp = Blueprint("wecom_callbacks", __name__, url_prefix="/callbacks", audience=None, description="WeCom callbacks")
