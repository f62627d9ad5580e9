"""Token cache semantics, `build_gateways`, credentials and the sandbox's control surface."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import requests
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client
from werkzeug.wrappers import Response

from integrations import CONFIG_KEYS, build_gateways
from integrations.sandbox import CREDENTIAL_KEYS, create_sandbox, dev_credentials
from integrations.tokens import TokenCache, TokenWaitTimeout
from integrations.wechat.client import MiniProgramClient
from integrations.wechatpay.gateway import WeChatPayClient
from integrations.wecom.client import WeComClient


class FakeClock:
    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def cache_factory(request):
    def make(**kwargs):
        if request.param == "memory":
            return TokenCache(**kwargs)
        client = request.getfixturevalue("redis_client")
        return TokenCache(client, namespace=client.namespace, **kwargs)

    return make


def test_token_stale_five_minutes_before_expiry(cache_factory):
    clock = FakeClock()
    cache = cache_factory(clock=clock)
    fetched: list[str] = []

    def fetch():
        fetched.append(f"t{len(fetched)}")
        return fetched[-1], 7200

    key = cache.key("wechat", "wxapp")
    assert cache.get(key, fetch) == "t0"
    clock.now += 7200 - 301
    assert cache.get(key, fetch) == "t0"
    clock.now += 2  # now inside the 5-minute margin
    assert cache.get(key, fetch) == "t1"
    assert cache.peek(key).expires_at == pytest.approx(clock.now + 7200)


def test_invalidate_only_drops_the_failed_token(cache_factory):
    cache = cache_factory()
    key = cache.key("wecom", "ww1:1000002")
    tokens = iter(["old", "new", "newer"])

    def fetch():
        return next(tokens), 7200

    assert cache.get(key, fetch) == "old"
    assert cache.invalidate(key, "old") is True
    assert cache.get(key, fetch) == "new"
    # A second caller that also saw "old" fail must not throw away "new".
    assert cache.invalidate(key, "old") is False
    assert cache.get(key, fetch) == "new"


def test_waiters_reread_instead_of_fetching(cache_factory):
    cache = cache_factory()
    key = cache.key("wechat", "wxapp")
    started = threading.Event()
    release = threading.Event()
    calls: list[int] = []

    def slow_fetch():
        calls.append(1)
        started.set()
        release.wait(5)
        return "shared", 7200

    results: list[str] = []
    first = threading.Thread(target=lambda: results.append(cache.get(key, slow_fetch)))
    first.start()
    started.wait(5)
    others = [threading.Thread(target=lambda: results.append(cache.get(key, slow_fetch))) for _ in range(5)]
    for t in others:
        t.start()
    release.set()
    for t in [first, *others]:
        t.join(5)
    assert results == ["shared"] * 6
    assert len(calls) == 1


@pytest.mark.redis
def test_a_process_keeps_its_fresh_token_and_follows_the_shared_one_when_told(redis_client):
    clock = FakeClock()
    fetched: list[str] = []

    def fetch():
        fetched.append(f"t{len(fetched)}")
        return fetched[-1], 7200

    a, b = (TokenCache(redis_client, namespace=redis_client.namespace, clock=clock) for _ in range(2))
    key = a.key("wecom", "ww1:1000002")
    assert a.get(key, fetch) == "t0" and b.get(key, fetch) == "t0"
    # Served from each process's own copy: Redis is not read again.
    redis_client.delete(key)
    assert a.get(key, fetch) == "t0" and b.get(key, fetch) == "t0"
    assert fetched == ["t0"]

    # A's call was refused: A drops its token and fetches; B still holds t0 until the upstream
    # refuses it too, and then takes A's token from Redis instead of fetching another.
    assert a.invalidate(key, "t0") is False  # Redis no longer had it
    assert a.get(key, fetch) == "t1"
    assert b.get(key, fetch) == "t0"
    assert b.invalidate(key, "t0") is False  # the shared token is t1: kept
    assert b.get(key, fetch) == "t1"
    assert fetched == ["t0", "t1"]

    # The copy goes stale with the shared entry's margin: both turn to Redis, one refresh.
    clock.now += 7200 - 299
    assert a.get(key, fetch) == "t2" and b.get(key, fetch) == "t2"
    assert fetched == ["t0", "t1", "t2"]


def test_waiter_gives_up_when_the_lock_holder_hangs():
    cache = TokenCache(lock_ttl=5, wait_timeout=0.2)
    key = cache.key("wechat", "wxapp")
    assert cache._backend.try_lock(key, 5)
    with pytest.raises(TokenWaitTimeout):
        cache.get(key, lambda: ("never", 7200))


@pytest.mark.redis
def test_redis_key_layout(redis_client, sandbox_reset):
    cache = TokenCache(redis_client)
    assert cache.key("wechat", "wxabc") == "dealerloop:token:wechat:wxabc"
    assert cache.key("wecom", "ww1:1000002") == "dealerloop:token:wecom:ww1:1000002"


def test_dev_credentials_are_stable_and_complete():
    first, second = dev_credentials(), dev_credentials()
    assert first == second
    assert set(first) == set(CREDENTIAL_KEYS)
    assert set(CREDENTIAL_KEYS) < set(CONFIG_KEYS)
    assert set(CONFIG_KEYS) - set(CREDENTIAL_KEYS) == {
        "WECHAT_API_BASE",
        "WECOM_API_BASE",
        "WECHATPAY_GATEWAY",
        "WECHATPAY_NOTIFY_URL",
        "UPSTREAM_TIMEOUT",
    }
    assert len(first["WECOM_CALLBACK_AES_KEY"]) == 43
    assert first["WECHATPAY_PRIVATE_KEY"].startswith("-----BEGIN PRIVATE KEY-----")
    assert first["WECHATPAY_PUBLIC_KEY"].startswith("-----BEGIN PUBLIC KEY-----")
    assert first["WECHATPAY_PUBLIC_KEY_ID"].startswith("PUB_KEY_ID_")


@pytest.mark.redis
def test_build_gateways_against_sandbox(sandbox_reset, redis_client):
    gateways = build_gateways(sandbox_reset.config(), redis_client)
    try:
        assert isinstance(gateways.miniprogram, MiniProgramClient)
        assert isinstance(gateways.wecom, WeComClient)
        assert isinstance(gateways.wechatpay, WeChatPayClient)
        assert gateways.wecom.agent_id == sandbox_reset.credentials["WECOM_AGENT_ID"]
        assert gateways.extra["tokens"].shared
        code = sandbox_reset.state.issue_login_code("oOwner1")
        assert gateways.miniprogram.code_to_session(code).openid == "oOwner1"
        status, _ = gateways.wechatpay.jsapi_prepay(
            description="x", out_trade_no="DLWIRE0001", total=1, openid="oOwner1"
        )
        assert status == 200
    finally:
        gateways.miniprogram.close()
        gateways.wecom.close()
        ids = (sandbox_reset.credentials["WECHAT_APP_ID"], sandbox_reset.credentials["WECOM_CORP_ID"])
        for key in redis_client.scan_iter(match="dealerloop:token:*"):  # only this run's random app ids
            if any(i in key.decode() for i in ids):
                redis_client.delete(key)


def test_build_gateways_without_pay():
    gateways = build_gateways({**dev_credentials(), "WECHATPAY_MCHID": ""})
    try:
        assert gateways.wechatpay is None
        assert not gateways.extra["tokens"].shared
        assert gateways.miniprogram.sdk.API_BASE_URL == "https://api.weixin.qq.com/cgi-bin/"
    finally:
        gateways.miniprogram.close()
        gateways.wecom.close()


def test_sandbox_does_not_import_backend():
    code = (
        "import sys, integrations.sandbox as s; s.create_sandbox(s.dev_credentials()); print('backend' in sys.modules)"
    )
    argv = [sys.executable, "-W", "error", "-c", code]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60)  # noqa: S603
    assert out.stdout.strip() == "False"


def test_mounted_under_dispatcher_middleware():
    sandbox = create_sandbox(dev_credentials())
    app = DispatcherMiddleware(lambda e, s: Response("core app")(e, s), sandbox.mounts())
    client = Client(app)
    creds = sandbox.state.credentials
    token = client.get(
        "/sandbox/wechat/cgi-bin/token",
        query_string={
            "grant_type": "client_credential",
            "appid": creds["WECHAT_APP_ID"],
            "secret": creds["WECHAT_APP_SECRET"],
        },
    )
    assert "access_token" in token.get_json()
    code = client.post("/sandbox/wecom/_sandbox/oauth-code", json={"userid": "advisor.zhang"}).get_json()["code"]
    assert code in sandbox.state.oauth_codes
    unsigned = client.post("/sandbox/wechatpay/v3/pay/transactions/jsapi", json={})
    assert unsigned.status_code == 401
    assert unsigned.headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    assert [e["path"] for e in sandbox.state.received()] == ["/cgi-bin/token", "/v3/pay/transactions/jsapi"]


def test_control_endpoints(sandbox_reset):
    wechat = sandbox_reset.wechat_url
    requests.get(wechat + "/cgi-bin/token", params={"grant_type": "client_credential"}, timeout=5)
    received = requests.get(wechat + "/_sandbox/received", timeout=5).json()["received"]
    assert [(r["method"], r["path"], r["query"]["grant_type"]) for r in received] == [
        ("GET", "/cgi-bin/token", "client_credential")
    ]

    fault = requests.post(
        wechat + "/_sandbox/faults",
        json={"mode": "errcode", "errcode": 45009, "path": "/cgi-bin/token", "count": 1},
        timeout=5,
    )
    assert fault.json()["fault"]["service"] == "wechat"
    assert requests.get(wechat + "/cgi-bin/token", timeout=5).json()["errcode"] == 45009
    assert requests.get(wechat + "/cgi-bin/token", timeout=5).json()["errcode"] == 40002  # the fault was used up

    requests.post(wechat + "/_sandbox/faults", json={"mode": "down"}, timeout=5)
    down = requests.get(wechat + "/cgi-bin/token", timeout=5)
    assert down.status_code == 503
    assert requests.get(sandbox_reset.wecom_url + "/cgi-bin/gettoken", timeout=5).status_code == 200  # per service
    bad = requests.post(wechat + "/_sandbox/faults", json={"mode": "sideways"}, timeout=5)
    assert bad.status_code == 400

    requests.post(wechat + "/_sandbox/reset", timeout=5).raise_for_status()
    assert sandbox_reset.state.faults == []
    assert requests.get(wechat + "/_sandbox/received", timeout=5).json()["received"] == []
    assert "advisor.zhang" in sandbox_reset.state.members  # the demo seed is back


def test_owner_login_still_works_while_redis_is_down(sandbox_reset):
    """A Redis outage degrades the token cache to per-process; logins do not fail."""
    import redis

    from integrations import build_gateways

    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    gateways = build_gateways(sandbox_reset.config(), down)
    wx = gateways.miniprogram.code_to_session(sandbox_reset.state.issue_login_code("o-redis-down"))
    assert wx.openid == "o-redis-down"
