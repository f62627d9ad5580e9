"""Redis lost while a process is fetching a WeChat access token (the lock is taken, the request
is on its way, then Redis goes): the write and the unlock fail, and the lookup runs again on the
process's fallback cache, which fetches a second token. WeChat supersedes the first (kept 5 more
minutes), but that one was never handed out: the caller is served with the second. The lock
stays in Redis until its TTL, so another process's first lookup once Redis is back waits for it
(there is no entry to hand out meanwhile), then fetches; that supersedes this process's token,
which costs this one a single refused call absorbed by the bounded invalidate-and-retry. No
caller fails; the price is one extra fetch (WeChat's daily quota is 2000) and a wait of up to
the lock TTL, as after a crashed holder, so the cache is left as it is. Redis here sits behind
the TCP forwarder of tests/test_redis_outage_worker.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest

from backend import connect_redis
from integrations import build_gateways
from integrations.tokens import TokenCache
from tests.test_redis_outage_worker import Forwarder

pytestmark = pytest.mark.redis


@pytest.fixture
def flaky_redis(redis_url: str) -> Iterator[tuple[Forwarder, Any]]:
    """A client for this test's Redis database reached through a forwarder the test can stop."""
    import redis

    parsed = urlparse(redis_url)
    direct = redis.Redis.from_url(redis_url)
    direct.flushdb()
    fwd = Forwarder((parsed.hostname or "127.0.0.1", parsed.port or 6379))
    fwd.start()
    number = int(parsed.path.lstrip("/") or 0)
    client = connect_redis(f"redis://127.0.0.1:{fwd.port}/{number}")  # as the app builds it
    try:
        yield fwd, client
    finally:
        fwd.stop()
        client.close()
        direct.flushdb()
        direct.close()


def _wait_for(what: Any, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.02)
    return False


def test_redis_lost_during_a_token_fetch_fetches_again_and_no_caller_fails(
    sandbox_reset: Any, flaky_redis: tuple[Forwarder, Any], redis_url: str
) -> None:
    fwd, redis_client = flaky_redis
    state = sandbox_reset.state
    # A short lock TTL keeps the test short; production's is max(15 s, 3 x the upstream timeout).
    cache = TokenCache(redis_client, lock_ttl=2.0)
    gateways = build_gateways(sandbox_reset.config(), redis_client, tokens=cache)
    lock = cache.key("wechat", sandbox_reset.config()["WECHAT_APP_ID"]) + ":lock"
    state.set_fault("slow", seconds=1.0, service="wechat", path="/cgi-bin/token", count=1)
    results: list[Any] = []

    def phone(number: str) -> None:  # a call that needs the access token
        try:
            results.append(gateways.miniprogram.get_phone_number(state.issue_phone_code(number)))
        except Exception as exc:  # noqa: BLE001 - the test reports what the caller saw
            results.append(exc)

    caller = threading.Thread(target=phone, args=("13800000001",))
    caller.start()
    assert _wait_for(lambda: sandbox_reset.hits("/cgi-bin/token", service="wechat") == 1)
    fwd.stop()  # Redis goes while WeChat is answering the fetch: the write and the unlock fail
    caller.join(15)
    assert results == ["13800000001"]
    assert sandbox_reset.hits("/cgi-bin/token", service="wechat") == 2  # the first one is dropped
    shared = connect_redis(redis_url)
    assert shared.exists(lock) and shared.get(lock.removesuffix(":lock")) is None  # lock left, no token

    # The same process goes on with the token it holds while Redis is down, and once it is back.
    phone("13800000002")
    fwd.start()
    phone("13800000003")
    assert sandbox_reset.hits("/cgi-bin/token", service="wechat") == 2

    # Another process finds no shared token and fetches one, superseding this process's; five
    # minutes later this process's call is refused once, and it takes the shared token.
    other = build_gateways(sandbox_reset.config(), shared)  # waits for the lock's TTL
    assert other.miniprogram.get_phone_number(state.issue_phone_code("13800000004")) == "13800000004"
    state.advance(state.TOKEN_OVERLAP + 1)
    phone("13800000005")
    assert other.miniprogram.get_phone_number(state.issue_phone_code("13800000006")) == "13800000006"
    assert results == ["13800000001", "13800000002", "13800000003", "13800000005"]
    assert sandbox_reset.hits("/cgi-bin/token", service="wechat") == 3
    assert sandbox_reset.hits("/wxa/business/getuserphonenumber") == 6 + 1  # one refused and retried
    shared.close()
