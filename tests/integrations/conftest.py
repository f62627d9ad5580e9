"""Fixtures for the adapter tests: clients against the sandbox, a namespaced Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from integrations.tokens import TokenCache
from integrations.wechat.client import MiniProgramClient
from integrations.wechatpay.gateway import WeChatPayClient
from integrations.wecom.client import WeComClient

REDIS_URL = os.environ.get("DEALERLOOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_client() -> Iterator[Any]:
    """Redis db 15; every key the test writes is under its own namespace and removed afterwards."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        client.close()
        if os.environ.get("CI") == "true":
            pytest.fail("Redis is required in CI")
        pytest.skip("Redis not reachable")
    client.namespace = f"dltest-integrations:{uuid.uuid4().hex[:12]}"  # type: ignore[attr-defined]
    yield client
    keys = list(client.scan_iter(match=client.namespace + ":*"))  # type: ignore[attr-defined]
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def clients(sandbox_reset) -> Iterator[Any]:
    """Factories for adapters pointed at the sandbox; everything made is closed afterwards."""
    made: list[Any] = []
    creds = sandbox_reset.credentials

    class Factory:
        sandbox = sandbox_reset

        @staticmethod
        def miniprogram(tokens: TokenCache | None = None, timeout: float = 2.0) -> MiniProgramClient:
            client = MiniProgramClient(
                creds["WECHAT_APP_ID"],
                creds["WECHAT_APP_SECRET"],
                api_base=sandbox_reset.wechat_url,
                timeout=timeout,
                tokens=tokens or TokenCache(),
            )
            made.append(client)
            return client

        @staticmethod
        def wecom(tokens: TokenCache | None = None, timeout: float = 2.0) -> WeComClient:
            client = WeComClient(
                creds["WECOM_CORP_ID"],
                creds["WECOM_AGENT_ID"],
                creds["WECOM_SECRET"],
                api_base=sandbox_reset.wecom_url,
                timeout=timeout,
                tokens=tokens or TokenCache(),
            )
            made.append(client)
            return client

        @staticmethod
        def wechatpay(timeout: float = 2.0, **overrides: Any) -> WeChatPayClient:
            kwargs: dict[str, Any] = {
                "mchid": creds["WECHATPAY_MCHID"],
                "appid": creds["WECHATPAY_APPID"],
                "private_key": creds["WECHATPAY_PRIVATE_KEY"],
                "cert_serial_no": creds["WECHATPAY_CERT_SERIAL"],
                "apiv3_key": creds["WECHATPAY_APIV3_KEY"],
                "public_key": creds["WECHATPAY_PUBLIC_KEY"],
                "public_key_id": creds["WECHATPAY_PUBLIC_KEY_ID"],
                "notify_url": "https://dealerloop.test/api/app/v1/payments/wechatpay/notify",
                "gateway": sandbox_reset.wechatpay_url,
                "timeout": timeout,
            }
            kwargs.update(overrides)
            return WeChatPayClient(**kwargs)

    yield Factory
    for client in made:
        client.close()
