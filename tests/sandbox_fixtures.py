"""pytest fixtures for the WeChat / WeCom / WeChat Pay sandbox (registered as a plugin).

`sandbox` (session): a `SandboxServer` on 127.0.0.1, port 0, built from `dev_credentials()`.
`sandbox_reset` (function): the same sandbox, with state and faults reset before and after.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from integrations.sandbox import SandboxServer, SandboxState, create_sandbox, dev_credentials

TEST_NOTIFY_URL = "https://dealerloop.test/api/app/v1/payments/wechatpay/notify"
TEST_APP_HOST = "127.0.0.1"


@dataclass
class RunningSandbox:
    server: SandboxServer
    base_url: str
    state: SandboxState
    credentials: dict[str, str]

    @property
    def wechat_url(self) -> str:
        return self.base_url + "/wechat"

    @property
    def wecom_url(self) -> str:
        return self.base_url + "/wecom"

    @property
    def wechatpay_url(self) -> str:
        return self.base_url + "/wechatpay"

    def config(self, **overrides: Any) -> dict[str, Any]:
        """Every integration config key, pointed at this sandbox."""
        config: dict[str, Any] = {
            **self.credentials,
            "WECHAT_API_BASE": self.wechat_url,
            "WECOM_API_BASE": self.wecom_url,
            "WECOM_OAUTH_BASE": self.wecom_url,
            "WECHATPAY_GATEWAY": self.wechatpay_url,
            "WECHATPAY_NOTIFY_URL": TEST_NOTIFY_URL,
            "UPSTREAM_TIMEOUT": 2.0,
        }
        config.update(overrides)
        return config

    def reset(self) -> None:
        self.state.reset()

    def hits(self, path_prefix: str, service: str | None = None) -> int:
        """How many upstream requests the sandbox received under this path."""
        return len(self.state.received(path_prefix, service=service))


@pytest.fixture(scope="session")
def sandbox() -> Iterator[RunningSandbox]:
    credentials = dev_credentials()
    # The WeCom app's trusted domain: the host the tests' apps are served on (`live_app`).
    server = SandboxServer(create_sandbox(credentials, trusted_hosts=[TEST_APP_HOST]))
    base_url = server.start()
    try:
        yield RunningSandbox(server, base_url, server.sandbox.state, credentials)
    finally:
        server.stop()


@pytest.fixture
def sandbox_reset(sandbox: RunningSandbox) -> Iterator[RunningSandbox]:
    sandbox.reset()
    yield sandbox
    sandbox.reset()
