"""Mini-program gateway on wechatpy 1.8.18 (login, phone number, subscribe messages)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wechatpy.client import WeChatClient

from backend.platform.ports import MiniProgramSession

from ..tokens import TokenCache
from ..upstream import TokenedCaller, fetch_json

SERVICE = "wechat"
DEFAULT_API_BASE = "https://api.weixin.qq.com"


class _WeChatSDK(WeChatClient):
    """wechatpy's client with every hard-coded host replaced by `api_base` and tokens from our cache."""

    def __init__(
        self, appid: str, secret: str, *, api_base: str, timeout: float, token_source: Callable[[], str]
    ) -> None:
        super().__init__(appid, secret, timeout=timeout, auto_retry=False)
        self.api_base = api_base.rstrip("/")
        self.API_BASE_URL = self.api_base + "/cgi-bin/"
        self.wxa.API_BASE_URL = self.api_base + "/"
        self._token_source = token_source

    @property
    def access_token(self) -> str:  # type: ignore[override]
        # wechatpy appends this to every call; the caller pins the token of the current attempt.
        return self._token_source()

    def fetch_access_token(self) -> dict[str, Any]:
        return fetch_json(
            SERVICE,
            self._http,
            self.api_base + "/cgi-bin/token",
            {"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
            self.timeout,
        )


class MiniProgramClient:
    """`MiniProgramGateway` for one mini-program; safe to share between threads."""

    def __init__(
        self,
        appid: str,
        secret: str,
        *,
        api_base: str = DEFAULT_API_BASE,
        timeout: float = 5.0,
        tokens: TokenCache | None = None,
    ) -> None:
        self.appid = appid
        self.tokens = tokens or TokenCache()
        self.caller = TokenedCaller(SERVICE, self.tokens, self.tokens.key(SERVICE, appid), self._fetch_token)
        self.sdk = _WeChatSDK(appid, secret, api_base=api_base, timeout=timeout, token_source=self.caller.current_token)

    def _fetch_token(self) -> tuple[str, float]:
        result = self.sdk.fetch_access_token()
        return result["access_token"], float(result.get("expires_in", 7200))

    def close(self) -> None:
        self.sdk._http.close()

    # --- MiniProgramGateway ----------------------------------------------------------
    def code_to_session(self, js_code: str) -> MiniProgramSession:
        result = self.caller.call(lambda: self.sdk.wxa.code_to_session(js_code))
        return MiniProgramSession(
            openid=result["openid"], unionid=result.get("unionid"), session_key=result["session_key"]
        )

    def get_phone_number(self, phone_code: str) -> str:
        result = self.caller.call(
            lambda: self.sdk.post(
                "wxa/business/getuserphonenumber",
                data={"code": phone_code},
                api_base_url=self.sdk.api_base + "/",
            )
        )
        return result["phone_info"]["purePhoneNumber"]

    def send_subscribe_message(
        self,
        openid: str,
        template_id: str,
        data: dict[str, Any],
        page: str | None = None,
        *,
        miniprogram_state: str | None = None,
        lang: str = "zh_CN",
    ) -> None:
        body: dict[str, Any] = {"touser": openid, "template_id": template_id, "data": data, "lang": lang}
        if page:
            body["page"] = page
        if miniprogram_state:
            body["miniprogram_state"] = miniprogram_state
        self.caller.call(lambda: self.sdk.post("message/subscribe/send", data=body))
