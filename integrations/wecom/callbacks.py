"""WeCom callback receiver (/callbacks/wecom): verify, decrypt, store raw, acknowledge.

One URL serves every configured app: the outer envelope names the corp (`ToUserName`) and the
agent (`AgentID`), which select the app's token and EncodingAESKey. WeCom waits 5 s and retries
on anything but 200, so the request only verifies, stores the event with its dedup key and
answers `success`; the work happens in the event's job.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, request
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException

from backend.platform.api import Blueprint, public
from backend.platform.db import db, utcnow
from backend.platform.errors import AppError
from backend.wecom.events import parse_event, store_event

log = logging.getLogger("dealerloop.wecom.callbacks")

blp = Blueprint("wecom_callbacks", __name__, url_prefix="/callbacks", audience=None, description="WeCom callbacks")

TIMESTAMP_WINDOW = 300  # seconds either side of our clock

_TEXT_OK = {
    "description": "the plaintext (GET) or `success`",
    "content": {"text/plain": {"schema": {"type": "string"}}},
}
_XML_BODY = {
    "required": True,
    "description": "`<xml><ToUserName/><AgentID/><Encrypt/></xml>` signed with msg_signature",
    "content": {"text/xml": {"schema": {"type": "string"}}},
}


@dataclass(frozen=True)
class CallbackApp:
    corp_id: str
    agent_id: str
    crypto: WeChatCrypto


def callback_apps() -> list[CallbackApp]:
    """The apps whose callbacks we accept (built once per Flask app)."""
    apps = current_app.extensions.get("dealerloop.wecom_callback_apps")
    if apps is None:
        gateways = current_app.extensions["dealerloop.gateways"]
        configs = [gateways.extra["wecom_callback"], *gateways.extra.get("wecom_callback_more", [])]
        apps = [
            CallbackApp(
                c["corp_id"],
                str(c.get("agent_id") or current_app.config.get("WECOM_AGENT_ID") or ""),
                WeChatCrypto(c["token"], c["aes_key"], c["corp_id"]),
            )
            for c in configs
            if c.get("token") and c.get("aes_key")
        ]
        current_app.extensions["dealerloop.wecom_callback_apps"] = apps
    return apps


def _check_timestamp(timestamp: str) -> None:
    try:
        skew = abs(time.time() - int(timestamp))
    except (TypeError, ValueError) as exc:
        raise AppError("wecom.callback_stale", 400) from exc
    if skew > TIMESTAMP_WINDOW:
        raise AppError("wecom.callback_stale", 400)


def _decrypt(app: CallbackApp, signature: str, timestamp: str, nonce: str, encrypted: str) -> str:
    try:
        # check_signature = signature over (token, timestamp, nonce, encrypted), then decrypt
        # and compare the receive id with the corp id.
        plain = app.crypto.check_signature(signature, timestamp, nonce, encrypted)
    except InvalidSignatureException as exc:
        raise AppError("wecom.signature_invalid", 403) from exc
    except InvalidCorpIdException as exc:
        raise AppError("wecom.receive_id_mismatch", 403) from exc
    except Exception as exc:  # bad base64 / padding / length: tampered or truncated ciphertext
        raise AppError("wecom.callback_malformed", 400) from exc
    return plain.decode("utf-8") if isinstance(plain, bytes) else str(plain)


def _params() -> tuple[str, str, str]:
    args = request.args
    return args.get("msg_signature", ""), args.get("timestamp", ""), args.get("nonce", "")


@blp.route("/wecom", methods=["GET"])
@public
@blp.doc(responses={"200": _TEXT_OK})
def verify_url() -> Response:
    """URL verification: answer the decrypted `echostr`, nothing else."""
    signature, timestamp, nonce = _params()
    echostr = request.args.get("echostr", "")
    apps = callback_apps()
    if not apps:
        raise AppError("wecom.unknown_app", 403)
    _check_timestamp(timestamp)
    error: AppError | None = None
    for app in apps:
        try:
            plain = _decrypt(app, signature, timestamp, nonce, echostr)
        except AppError as exc:
            error = exc
            continue
        return Response(plain, status=200, mimetype="text/plain")
    assert error is not None
    raise error


@blp.route("/wecom", methods=["POST"])
@public
@blp.doc(responses={"200": _TEXT_OK}, requestBody=_XML_BODY)
def receive_event() -> Response:
    """Verify, decrypt, store once, acknowledge with `success` (a redelivery too)."""
    received_at = utcnow()
    signature, timestamp, nonce = _params()
    envelope = parse_event(request.get_data(as_text=True))
    encrypted = envelope.get("Encrypt")
    if not isinstance(encrypted, str) or not encrypted:
        raise AppError("wecom.callback_malformed", 400)
    corp_id = str(envelope.get("ToUserName") or "")
    agent_id = str(envelope.get("AgentID") or "")
    app = _select_app(corp_id, agent_id)
    plain = _decrypt(app, signature, timestamp, nonce, encrypted)
    # The signature is checked first so that an unsigned request learns nothing about our clock.
    _check_timestamp(timestamp)
    inner: dict[str, Any] = parse_event(plain)
    if str(inner.get("ToUserName") or app.corp_id) != app.corp_id:
        raise AppError("wecom.receive_id_mismatch", 403)
    intake = store_event(db.session(), app.corp_id, agent_id or app.agent_id, plain, received_at)
    response = Response("success", status=200, mimetype="text/plain")
    if intake.welcome_job_id is not None and not current_app.extensions["dealerloop.jobs"].inline:
        # Fast path for the 20-second WelcomeCode: once the acknowledgement has been sent (and the
        # unit of work committed), this process sends the welcome itself instead of waiting for
        # a worker behind a burst. The outbox row is claimed under its row lock, so the RQ job
        # handed over at commit finds it done and skips: sent once either way.
        response.call_on_close(
            functools.partial(_send_welcome_now, current_app._get_current_object(), intake.welcome_job_id)
        )
    return response


def _send_welcome_now(app: Any, job_id: int) -> None:
    from backend.platform.jobs import execute

    try:
        execute(job_id, app=app)
    except Exception:  # recorded on the outbox row; the RQ job retries it
        log.exception("welcome fast path failed for outbox %s", job_id)


def _select_app(corp_id: str, agent_id: str) -> CallbackApp:
    apps = callback_apps()
    for app in apps:
        if app.corp_id == corp_id and (not agent_id or not app.agent_id or app.agent_id == agent_id):
            return app
    raise AppError("wecom.receive_id_mismatch" if apps else "wecom.unknown_app", 403)
