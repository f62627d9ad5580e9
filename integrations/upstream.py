"""What the wechatpy-based clients share: token pinning, one bounded retry, error mapping.

wechatpy's own retry (auto_retry=True) refetches and recurses without a cap; we switch it off and
retry once here. Each attempt pins the token it uses (thread-local), so when the upstream rejects
it we invalidate exactly that token and not one a neighbour refreshed meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import requests
from wechatpy.exceptions import WeChatClientException

from backend.platform.ports import UpstreamError

from .tokens import TokenCache, TokenWaitTimeout

TOKEN_ERRCODES = frozenset({40001, 40014, 42001})


def map_request_exception(service: str, exc: requests.RequestException) -> UpstreamError:
    if isinstance(exc, requests.Timeout):
        return UpstreamError("timeout", errmsg=type(exc).__name__, service=service)
    return UpstreamError("unavailable", errmsg=type(exc).__name__, service=service)


def check_errcode(service: str, result: dict[str, Any]) -> dict[str, Any]:
    """A missing errcode counts as 0 (e.g. jscode2session success bodies carry none)."""
    try:
        errcode = int(result.get("errcode", 0) or 0)
    except (TypeError, ValueError) as exc:
        raise UpstreamError("unavailable", errmsg="unparsable errcode", service=service) from exc
    if errcode:
        raise UpstreamError("rejected", errcode=errcode, errmsg=str(result.get("errmsg", "")), service=service)
    return result


def fetch_json(
    service: str, http: requests.Session, url: str, params: dict[str, Any], timeout: float | None
) -> dict[str, Any]:
    """A plain GET with the bounded timeout (wechatpy's own token fetch sends none)."""
    try:
        response = http.get(url, params=params, timeout=timeout)
    except requests.RequestException as exc:
        raise map_request_exception(service, exc) from exc
    if response.status_code >= 300:
        raise UpstreamError("unavailable", errmsg=f"HTTP {response.status_code}", service=service)
    try:
        result = response.json()
    except ValueError as exc:
        raise UpstreamError("unavailable", errmsg="not JSON", service=service) from exc
    if not isinstance(result, dict):
        raise UpstreamError("unavailable", errmsg="not a JSON object", service=service)
    return check_errcode(service, result)


class TokenedCaller:
    """Runs wechatpy calls with a cached token, one bounded retry and UpstreamError mapping."""

    def __init__(
        self, service: str, tokens: TokenCache, token_key: str, fetch_token: Callable[[], tuple[str, float]]
    ) -> None:
        self.service = service
        self.tokens = tokens
        self.token_key = token_key
        self._fetch_token = fetch_token
        self._local = threading.local()

    def current_token(self) -> str:
        """The token for the call in progress on this thread (what wechatpy appends)."""
        pinned = getattr(self._local, "token", None)
        return pinned if pinned else self._get_token()

    def _get_token(self) -> str:
        try:
            return self.tokens.get(self.token_key, self._fetch_token)
        except TokenWaitTimeout as exc:
            raise UpstreamError("timeout", errmsg=str(exc), service=self.service) from exc

    def call(self, fn: Callable[[], Any]) -> dict[str, Any]:
        for attempt in (1, 2):
            token = self._get_token()
            self._local.token = token
            try:
                result = fn()
            except WeChatClientException as exc:
                if exc.errcode is None:  # HTTP error status
                    raise UpstreamError("unavailable", errmsg=str(exc), service=self.service) from exc
                errcode = int(exc.errcode)
                if errcode in TOKEN_ERRCODES and attempt == 1:
                    self.tokens.invalidate(self.token_key, token)
                    continue
                raise UpstreamError(
                    "rejected", errcode=errcode, errmsg=str(exc.errmsg or ""), service=self.service
                ) from exc
            except requests.RequestException as exc:
                raise map_request_exception(self.service, exc) from exc
            finally:
                self._local.token = None
            if not isinstance(result, dict):  # wechatpy hands back the Response when it is not JSON
                raise UpstreamError("unavailable", errmsg="not JSON", service=self.service)
            return check_errcode(self.service, result)
        raise AssertionError("unreachable")  # pragma: no cover
