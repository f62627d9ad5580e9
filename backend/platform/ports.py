"""The small interfaces through which the domain reaches WeChat, WeCom and WeChat Pay.

`integrations/` implements them with wechatpy / wechatpayv3; `create_app` wires the
implementations into `app.extensions["dealerloop.gateways"]`. The domain only sees these
types, so a service can be called from a view, a job or the CLI with whichever gateway the
app was built with (production hosts or the sandbox — the code path is the same).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

# Answers that say "not now" rather than "no": busy (-1), rate limited (45009; 45011 on WeChat),
# too many concurrent calls (45033), and the access token refused (40001, 40014, 42001) when the
# client's one refresh did not help (another process renewed it in between). A retry later may
# succeed.
TRANSIENT_ERRCODES = frozenset({-1, 40001, 40014, 42001, 45009, 45011, 45033})


class UpstreamError(Exception):
    """An upstream (WeChat / WeCom / Pay) call failed.

    `reason` is one of:
      - "rejected": the upstream answered with an errcode (see `errcode`), e.g. 40029 invalid code
      - "unavailable": connection refused, HTTP 5xx, unparsable answer
      - "timeout": no answer within the configured bounded timeout
    """

    def __init__(self, reason: str, errcode: int | None = None, errmsg: str = "", service: str = ""):
        super().__init__(f"{service} {reason} errcode={errcode} {errmsg}".strip())
        self.reason = reason
        self.errcode = errcode
        self.errmsg = errmsg
        self.service = service

    @property
    def transient(self) -> bool:
        """Whether trying again later may succeed (a refusal of the request itself will not)."""
        return self.reason != "rejected" or self.errcode in TRANSIENT_ERRCODES


@dataclass(frozen=True)
class MiniProgramSession:
    openid: str
    unionid: str | None
    session_key: str


@dataclass(frozen=True)
class WeComUser:
    """Result of exchanging a WeCom OAuth code: a corp member (userid) or an outsider."""

    userid: str | None
    external_userid: str | None = None
    openid: str | None = None


class MiniProgramGateway(Protocol):
    def code_to_session(self, js_code: str) -> MiniProgramSession: ...

    def get_phone_number(self, phone_code: str) -> str:
        """Return the pure phone number (no country code) for a getPhoneNumber code."""
        ...

    def send_subscribe_message(
        self, openid: str, template_id: str, data: dict[str, Any], page: str | None = None
    ) -> None: ...


class WeComGateway(Protocol):
    corp_id: str
    agent_id: str
    oauth_base: str  # "" for WECOM_OAUTH_BASE

    def get_user_info(self, code: str) -> WeComUser: ...

    def get(self, endpoint: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Generic GET on the WeCom API (cgi-bin/...), with token handling and bounded retry."""
        ...

    def post(self, endpoint: str, data: dict[str, Any]) -> dict[str, Any]: ...

    def upload_media(self, media_type: str, filename: str, content: bytes) -> dict[str, Any]:
        """media/upload: a temporary media id (`media_id`, `created_at`), valid three days."""
        ...

    def jsapi_signature(self, url: str, agent: bool = False) -> dict[str, Any]: ...


class WeChatPayGateway(Protocol):
    mchid: str
    appid: str

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict]: ...


@dataclass
class Gateways:
    miniprogram: MiniProgramGateway
    wecom: WeComGateway
    wechatpay: WeChatPayGateway | None = None
    extra: dict[str, Any] = field(default_factory=dict)
