"""WeCom gateway on wechatpy 1.8.18's `wechatpy.enterprise` client.

OAuth uses the current `auth/getuserinfo` (wechatpy only knows the legacy path). JS-SDK tickets
are cached through the shared token cache, per corp for `wx.config` and per corp *and agent* for
`wx.agentConfig` (wechatpy's own agent-ticket key is per corp only, so two agents would collide).
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Callable
from typing import Any

from wechatpy.enterprise import WeChatClient as EnterpriseClient

from backend.platform.ports import WeComUser

from ..tokens import TokenCache
from ..upstream import TokenedCaller, fetch_json

SERVICE = "wecom"
DEFAULT_API_BASE = "https://qyapi.weixin.qq.com"
_NONCE_ALPHABET = string.ascii_letters + string.digits
UPLOAD_TIMEOUT = 60.0  # seconds to send a file to media/upload and read the answer


class _WeComSDK(EnterpriseClient):
    def __init__(
        self, corp_id: str, secret: str, *, api_base: str, timeout: float, token_source: Callable[[], str]
    ) -> None:
        super().__init__(corp_id, secret, timeout=timeout, auto_retry=False)
        self.api_base = api_base.rstrip("/")
        self.API_BASE_URL = self.api_base + "/cgi-bin/"
        self._token_source = token_source

    @property
    def access_token(self) -> str:  # type: ignore[override]
        return self._token_source()

    def fetch_access_token(self) -> dict[str, Any]:
        return fetch_json(
            SERVICE,
            self._http,
            self.api_base + "/cgi-bin/gettoken",
            {"corpid": self.corp_id, "corpsecret": self.secret},
            self.timeout,
        )


class WeComClient:
    """`WeComGateway` for one self-built app (corp + agent + secret); thread-safe."""

    def __init__(
        self,
        corp_id: str,
        agent_id: str,
        secret: str,
        *,
        api_base: str = DEFAULT_API_BASE,
        oauth_base: str = "",
        timeout: float = 5.0,
        tokens: TokenCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.corp_id = corp_id
        self.agent_id = str(agent_id)
        # Its OAuth2 authorize host when not WECOM_OAUTH_BASE (an app served by a sandbox of its own).
        self.oauth_base = oauth_base
        self.tokens = tokens or TokenCache()
        self.clock = clock
        self.caller = TokenedCaller(
            SERVICE, self.tokens, self.tokens.key(SERVICE, f"{corp_id}:{self.agent_id}"), self._fetch_token
        )
        self.sdk = _WeComSDK(
            corp_id, secret, api_base=api_base, timeout=timeout, token_source=self.caller.current_token
        )

    def _fetch_token(self) -> tuple[str, float]:
        result = self.sdk.fetch_access_token()
        return result["access_token"], float(result.get("expires_in", 7200))

    def close(self) -> None:
        self.sdk._http.close()

    @staticmethod
    def _endpoint(endpoint: str) -> str:
        endpoint = endpoint.lstrip("/")
        return endpoint.removeprefix("cgi-bin/")

    # --- WeComGateway ----------------------------------------------------------------
    def get(self, endpoint: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        path = self._endpoint(endpoint)
        # wechatpy adds access_token into the params dict it is given: hand it a fresh copy per attempt.
        return self.caller.call(lambda: self.sdk.get(path, params=dict(params or {})))

    def post(self, endpoint: str, data: dict[str, Any]) -> dict[str, Any]:
        path = self._endpoint(endpoint)
        return self.caller.call(lambda: self.sdk.post(path, data=data))

    def upload_media(self, media_type: str, filename: str, content: bytes) -> dict[str, Any]:
        # As wechatpy's media.upload posts it (multipart field `media`, `type` in the query), with
        # time to send the file: the client's timeout (a few seconds) bounds the whole send, which
        # a 7 MB file on a modest uplink would not meet.
        return self.caller.call(
            lambda: self.sdk.post(
                "media/upload",
                params={"type": media_type},
                files={"media": (filename, content)},
                timeout=(self.sdk.timeout, UPLOAD_TIMEOUT),
            )
        )

    def get_user_info(self, code: str) -> WeComUser:
        result = self.get("auth/getuserinfo", {"code": code})
        if result.get("userid"):
            return WeComUser(userid=result["userid"])
        return WeComUser(userid=None, external_userid=result.get("external_userid"), openid=result.get("openid"))

    def jsapi_ticket(self, agent: bool = False) -> str:
        if agent:
            key = self.tokens.key("wecom_agent_ticket", f"{self.corp_id}:{self.agent_id}")
            fetch = self.sdk.jsapi.get_agent_ticket
        else:
            key = self.tokens.key("wecom_jsapi_ticket", self.corp_id)
            fetch = self.sdk.jsapi.get_ticket

        def fetch_ticket() -> tuple[str, float]:
            result = self.caller.call(fetch)
            return result["ticket"], float(result.get("expires_in", 7200))

        return self.tokens.get(key, fetch_ticket)

    def jsapi_signature(
        self, url: str, agent: bool = False, *, nonce_str: str | None = None, timestamp: int | None = None
    ) -> dict[str, Any]:
        """Arguments for `wx.config` (agent=False) or `wx.agentConfig` (agent=True)."""
        ticket = self.jsapi_ticket(agent)
        nonce_str = nonce_str or "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(16))
        timestamp = int(timestamp if timestamp is not None else self.clock())
        signature = self.sdk.jsapi.get_jsapi_signature(nonce_str, ticket, timestamp, url.split("#", 1)[0])
        result: dict[str, Any] = {
            "corpid": self.corp_id,
            "timestamp": timestamp,
            "nonceStr": nonce_str,
            "signature": signature,
        }
        if agent:
            result["agentid"] = self.agent_id
        else:
            result["appId"] = self.corp_id  # wx.config names the corp id appId
        return result
