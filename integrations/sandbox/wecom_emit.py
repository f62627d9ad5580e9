"""Emit WeCom callback events to a callback URL over real HTTP, encrypted and signed as WeCom does.

Public helpers (no import of `backend`; usable from tests, scripts and benchmarks):

``build_event(event="change_external_contact", *, corp_id, create_time=None, **fields) -> str``
    The plaintext XML of one event. `fields` become elements in order, e.g.
    ``build_event(corp_id=c, ChangeType="add_external_contact", UserID="u", ExternalUserID="wm..",
    State="store01", WelcomeCode="...")``; ``MemChangeList=["wm1", "u2"]`` (a list) becomes
    ``<MemChangeList><Item>..</Item></MemChangeList>`` for ``change_external_chat``.

``sign_event(xml, credentials, *, timestamp=None, nonce=None, receive_id=None) -> (params, body)``
    What WeCom POSTs for it: the query (`msg_signature`, `timestamp`, `nonce`) and the
    ``<xml><ToUserName/><AgentID/><Encrypt/></xml>`` body. AES-256-CBC with the app's
    EncodingAESKey, receive id = the corp id (or `receive_id` to forge one), SHA1 signature over
    (token, timestamp, nonce, Encrypt). `credentials` is a dict with WECOM_CORP_ID,
    WECOM_AGENT_ID, WECOM_CALLBACK_TOKEN and WECOM_CALLBACK_AES_KEY (the sandbox's
    ``dev_credentials()`` or ``SandboxState.credentials``).

``emit(url, events, credentials, *, duplicates=0, shuffle=False, seed=None, concurrency=1,
timeout=5.0, client=None) -> EmitReport``
    Deliver `events` (plaintext XML strings from `build_event`) to `url`
    (e.g. ``http://127.0.0.1:8000/callbacks/wecom``). Each delivery is signed afresh (its own
    nonce) as a WeCom redelivery is. ``duplicates=n`` adds n extra deliveries of randomly chosen
    events (some may repeat several times); ``shuffle=True`` sends everything in a random order
    (``seed`` makes both reproducible); ``concurrency`` threads send in parallel (a burst).
    ``client``: an object with ``post(url, params=..., data=..., headers=...)`` returning a
    response with ``status_code`` and ``text`` — defaults to a `requests.Session`; a Flask test
    client can be wrapped with `FlaskClientTransport`. The report lists every delivery's status,
    answer and latency (seconds), in the order sent.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from . import crypto

__all__ = ["Delivery", "EmitReport", "FlaskClientTransport", "build_event", "emit", "sign_event"]


def build_event(
    event: str = "change_external_contact", *, corp_id: str, create_time: int | None = None, **fields: Any
) -> str:
    """Plaintext XML of one WeCom event (see the module docstring)."""
    ts = int(time.time()) if create_time is None else int(create_time)
    parts = [
        f"<ToUserName><![CDATA[{escape(corp_id)}]]></ToUserName>",
        "<FromUserName><![CDATA[sys]]></FromUserName>",
        f"<CreateTime>{ts}</CreateTime>",
        "<MsgType><![CDATA[event]]></MsgType>",
        f"<Event><![CDATA[{escape(event)}]]></Event>",
    ]
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            items = "".join(f"<Item><![CDATA[{escape(str(v))}]]></Item>" for v in value)
            parts.append(f"<{name}>{items}</{name}>")
        elif isinstance(value, int):
            parts.append(f"<{name}>{value}</{name}>")
        else:
            parts.append(f"<{name}><![CDATA[{escape(str(value))}]]></{name}>")
    return "<xml>" + "".join(parts) + "</xml>"


def sign_event(
    xml: str,
    credentials: dict[str, str],
    *,
    timestamp: str | int | None = None,
    nonce: str | None = None,
    receive_id: str | None = None,
) -> tuple[dict[str, str], str]:
    """(query params, body) of the POST WeCom sends for this plaintext event."""
    corp_id = credentials["WECOM_CORP_ID"]
    encrypted = crypto.wecom_encrypt(credentials["WECOM_CALLBACK_AES_KEY"], xml, receive_id or corp_id)
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or str(secrets.randbelow(10**10))
    signature = crypto.wecom_signature(credentials["WECOM_CALLBACK_TOKEN"], ts, nonce, encrypted)
    body = (
        f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName>"
        f"<AgentID><![CDATA[{credentials['WECOM_AGENT_ID']}]]></AgentID>"
        f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    )
    return {"msg_signature": signature, "timestamp": ts, "nonce": nonce}, body


@dataclass(frozen=True)
class Delivery:
    index: int  # position in `events`
    status: int  # HTTP status (0: no answer)
    text: str
    seconds: float
    error: str | None = None


@dataclass
class EmitReport:
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def acknowledged(self) -> int:
        """Deliveries answered 200 `success` (or an empty 200, which WeCom also accepts)."""
        return sum(1 for d in self.deliveries if d.status == 200 and d.text in ("success", ""))

    @property
    def failed(self) -> list[Delivery]:
        return [d for d in self.deliveries if not (d.status == 200 and d.text in ("success", ""))]

    def latencies(self) -> list[float]:
        return sorted(d.seconds for d in self.deliveries)


class FlaskClientTransport:
    """Adapts a Flask test client to `emit` (same signing, no socket)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def post(self, url: str, *, params: dict[str, str], data: str, headers: dict[str, str], timeout: float) -> Any:
        resp = self.client.post(url, query_string=params, data=data, headers=headers)
        return _Answer(resp.status_code, resp.get_data(as_text=True))


@dataclass(frozen=True)
class _Answer:
    status_code: int
    text: str


def plan(events: Sequence[str], *, duplicates: int = 0, shuffle: bool = False, seed: int | None = None) -> list[int]:
    """The order of deliveries, as indexes into `events` (each event at least once)."""
    rng = random.Random(seed)
    order = list(range(len(events)))
    if events and duplicates:
        order += [rng.randrange(len(events)) for _ in range(duplicates)]
    if shuffle:
        rng.shuffle(order)
    return order


def emit(
    url: str,
    events: Iterable[str],
    credentials: dict[str, str],
    *,
    duplicates: int = 0,
    shuffle: bool = False,
    seed: int | None = None,
    concurrency: int = 1,
    timeout: float = 5.0,
    client: Any = None,
) -> EmitReport:
    """POST each event (and the duplicates) to `url`, signed and encrypted; see the module docstring."""
    events = list(events)
    order = plan(events, duplicates=duplicates, shuffle=shuffle, seed=seed)
    local = threading.local()

    def transport() -> Any:
        if client is not None:
            return client
        if not hasattr(local, "session"):
            import requests

            local.session = requests.Session()
        return local.session

    headers = {"Content-Type": "text/xml"}

    def send(index: int) -> Delivery:
        params, body = sign_event(events[index], credentials)
        started = time.perf_counter()
        try:
            resp = transport().post(url, params=params, data=body.encode(), headers=headers, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - a refused/timed-out delivery is reported, as WeCom would retry
            return Delivery(index, 0, "", time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
        return Delivery(index, resp.status_code, resp.text, time.perf_counter() - started)

    report = EmitReport()
    if concurrency <= 1:
        report.deliveries = [send(i) for i in order]
    else:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            report.deliveries = list(pool.map(send, order))
    return report
