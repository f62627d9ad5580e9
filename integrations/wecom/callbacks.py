"""WeCom callback receiver (/callbacks/wecom): verify, decrypt, store raw, acknowledge.

One URL serves every configured app: the outer envelope names the corp (`ToUserName`) and the
agent (`AgentID`), which select the app's token and EncodingAESKey. WeCom waits 5 s, retries on
anything but 200 and sends bursts, so the request only verifies, stores the event with its
dedup key (one autocommitted INSERT) and answers `success`; the event's jobs are created off
the request (backend.platform.intake) and the work happens in them.

The accepted POST is served by `WeComCallbackLane`, a WSGI layer in front of Flask: the
acknowledgement is the hottest path of the system and Flask's request machinery (context,
hooks, routing, response object) costs as much as the work itself (issue 3's benchmark holds
the receiver to 70 % of a bare endpoint's throughput). Anything else — a refusal, a body the
lane does not take, a database error — goes on to the Flask view, which runs the very same
`receive` and answers in the one error format.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from flask import Response, current_app, request
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException

from backend.platform.api import Blueprint, public
from backend.platform.db import db, is_duplicate_key, utcnow
from backend.platform.errors import AppError
from backend.platform.intake import announce
from backend.wecom.events import accept_event, parse_event

log = logging.getLogger("dealerloop.wecom.callbacks")

blp = Blueprint("wecom_callbacks", __name__, url_prefix="/callbacks", audience=None, description="WeCom callbacks")

PATH = "/callbacks/wecom"
TIMESTAMP_WINDOW = 300  # seconds either side of our clock
MAX_BODY = 64 * 1024  # an event is a few KB; the lane leaves anything bigger to Flask's limits

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


def callback_apps(app: Any) -> list[CallbackApp]:
    """The apps whose callbacks we accept (built once per Flask app)."""
    apps = app.extensions.get("dealerloop.wecom_callback_apps")
    if apps is None:
        gateways = app.extensions["dealerloop.gateways"]
        configs = [gateways.extra["wecom_callback"], *gateways.extra.get("wecom_callback_more", [])]
        apps = [
            CallbackApp(
                c["corp_id"],
                str(c.get("agent_id") or app.config.get("WECOM_AGENT_ID") or ""),
                WeChatCrypto(c["token"], c["aes_key"], c["corp_id"]),
            )
            for c in configs
            if c.get("token") and c.get("aes_key")
        ]
        app.extensions["dealerloop.wecom_callback_apps"] = apps
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
    apps = callback_apps(current_app)
    if not apps:
        raise AppError("wecom.unknown_app", 403)
    _check_timestamp(timestamp)
    _, plain = _decrypt_with_any(apps, signature, timestamp, nonce, echostr)
    return Response(plain, status=200, mimetype="text/plain")


@blp.route("/wecom", methods=["POST"])
@public
@blp.doc(responses={"200": _TEXT_OK}, requestBody=_XML_BODY)
def receive_event() -> Response:
    """Verify, decrypt, store once, acknowledge with `success` (a redelivery too)."""
    signature, timestamp, nonce = _params()
    receive(current_app._get_current_object(), signature, timestamp, nonce, request.get_data(as_text=True), utcnow())
    return Response("success", status=200, mimetype="text/plain")


def receive(app: Any, signature: str, timestamp: str, nonce: str, body: str, received_at: datetime) -> int | None:
    """The whole acknowledgement: verify and decrypt, store the event, announce it. Returns the
    new event's id, None for a redelivery (acknowledged again, stored once). Raises AppError
    for a callback that is refused; nothing is stored then."""
    envelope = parse_event(body)
    encrypted = envelope.get("Encrypt")
    if not isinstance(encrypted, str) or not encrypted:
        raise AppError("wecom.callback_malformed", 400)
    corp_id = str(envelope.get("ToUserName") or "")
    agent_id = str(envelope.get("AgentID") or "")
    target, plain = _decrypt_with_any(
        _select_apps(callback_apps(app), corp_id, agent_id), signature, timestamp, nonce, encrypted
    )
    # The signature is checked first so that an unsigned request learns nothing about our clock.
    _check_timestamp(timestamp)
    fields: dict[str, Any] = parse_event(plain)
    if str(fields.get("ToUserName") or target.corp_id) != target.corp_id:
        raise AppError("wecom.receive_id_mismatch", 403)
    try:
        # One autocommitted INSERT, not the request's unit of work: durable before `success`.
        with db.autocommit() as conn:
            raw_id = accept_event(conn, target.corp_id, agent_id or target.agent_id, plain, fields, received_at)
    except Exception as exc:
        if is_duplicate_key(exc):
            return None  # a redelivery: stored (and admitted) the first time
        raise
    announce(app, "wecom", raw_id)
    return raw_id


def _select_apps(apps: list[CallbackApp], corp_id: str, agent_id: str) -> list[CallbackApp]:
    """The apps the envelope may be for: its corp's, that agent's when it names one (the
    customer-contact callbacks often name none, and a corp may run several apps)."""
    found = [a for a in apps if a.corp_id == corp_id and (not agent_id or not a.agent_id or a.agent_id == agent_id)]
    if not found:
        raise AppError("wecom.receive_id_mismatch" if apps else "wecom.unknown_app", 403)
    return found


def _decrypt_with_any(
    apps: list[CallbackApp], signature: str, timestamp: str, nonce: str, encrypted: str
) -> tuple[CallbackApp, str]:
    """The first app whose token verifies the signature (and key decrypts), with the plaintext;
    else the first app's refusal."""
    error: AppError | None = None
    for app in apps:
        try:
            return app, _decrypt(app, signature, timestamp, nonce, encrypted)
        except AppError as exc:
            error = error or exc
    assert error is not None
    raise error


class WeComCallbackLane:
    """WSGI: answers an accepted `POST /callbacks/wecom` without entering Flask; everything
    else (other paths, refusals, errors) is passed on to the Flask app unchanged."""

    def __init__(self, wsgi_app: Any, app: Any) -> None:
        self.wsgi_app = wsgi_app
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        received_at = utcnow()
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if not 0 < length <= MAX_BODY:
            return self.wsgi_app(environ, start_response)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # the Flask view reads it again if it answers
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            receive(
                self.app,
                _first(query, "msg_signature"),
                _first(query, "timestamp"),
                _first(query, "nonce"),
                body.decode("utf-8", "replace"),
                received_at,
            )
        except Exception:  # noqa: BLE001 - the Flask view runs the same checks and answers the error
            return self.wsgi_app(environ, start_response)
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "7")])
        return [b"success"]


def _first(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    return values[0] if values else ""


def install_lane(app: Any) -> None:
    app.wsgi_app = WeComCallbackLane(app.wsgi_app, app)
