"""Mini-program adapter (wechatpy 1.8.18) against the sandbox on 127.0.0.1."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from backend.platform.ports import MiniProgramSession, UpstreamError
from integrations.tokens import TokenCache

SUBSCRIBE = "/cgi-bin/message/subscribe/send"
TOKEN = "/cgi-bin/token"


def test_login_code_success(clients):
    mp = clients.miniprogram()
    session = mp.code_to_session(clients.sandbox.state.issue_login_code("oOwner1", unionid="oUnion1"))
    assert isinstance(session, MiniProgramSession)
    assert (session.openid, session.unionid) == ("oOwner1", "oUnion1")
    assert session.session_key


def test_login_code_without_unionid(clients):
    mp = clients.miniprogram()
    session = mp.code_to_session(clients.sandbox.state.issue_login_code("oOwner2"))
    assert session.openid == "oOwner2"
    assert session.unionid is None


def test_login_code_reuse_is_40163(clients):
    mp = clients.miniprogram()
    code = clients.sandbox.state.issue_login_code("oOwner1")
    mp.code_to_session(code)
    with pytest.raises(UpstreamError) as err:
        mp.code_to_session(code)
    assert (err.value.reason, err.value.errcode, err.value.service) == ("rejected", 40163, "wechat")


def test_login_code_unknown_or_expired_is_40029(clients):
    mp = clients.miniprogram()
    state = clients.sandbox.state
    with pytest.raises(UpstreamError) as err:
        mp.code_to_session("never-issued")
    assert err.value.errcode == 40029

    code = state.issue_login_code("oOwner1")
    state.advance(state.CODE_TTL + 1)  # the sandbox clock moves; nobody sleeps
    with pytest.raises(UpstreamError) as err:
        mp.code_to_session(code)
    assert err.value.errcode == 40029


def test_login_code_via_control_endpoint(clients):
    sandbox = clients.sandbox
    code = requests.post(
        sandbox.wechat_url + "/_sandbox/login-code",
        json={"openid": "oOwner9", "unionid": "oUnion9"},
        timeout=5,
    ).json()["code"]
    session = clients.miniprogram().code_to_session(code)
    assert (session.openid, session.unionid) == ("oOwner9", "oUnion9")


def test_success_body_has_no_errcode(sandbox_reset):
    creds = sandbox_reset.credentials
    code = sandbox_reset.state.issue_login_code("oOwner1")
    body = requests.get(
        sandbox_reset.wechat_url + "/sns/jscode2session",
        params={
            "appid": creds["WECHAT_APP_ID"],
            "secret": creds["WECHAT_APP_SECRET"],
            "js_code": code,
            "grant_type": "authorization_code",
        },
        timeout=5,
    ).json()
    assert "errcode" not in body
    assert body["openid"] == "oOwner1"


def test_wrong_app_credentials(sandbox_reset):
    creds = sandbox_reset.credentials
    url = sandbox_reset.wechat_url + TOKEN
    bad_appid = requests.get(
        url,
        params={"grant_type": "client_credential", "appid": "wxnope", "secret": creds["WECHAT_APP_SECRET"]},
        timeout=5,
    ).json()
    bad_secret = requests.get(
        url,
        params={"grant_type": "client_credential", "appid": creds["WECHAT_APP_ID"], "secret": "nope"},
        timeout=5,
    ).json()
    assert bad_appid["errcode"] == 40013
    assert bad_secret["errcode"] == 40125


def test_new_token_invalidates_previous_after_overlap(sandbox_reset):
    creds = sandbox_reset.credentials
    state = sandbox_reset.state
    params = {
        "grant_type": "client_credential",
        "appid": creds["WECHAT_APP_ID"],
        "secret": creds["WECHAT_APP_SECRET"],
    }
    first = requests.get(sandbox_reset.wechat_url + TOKEN, params=params, timeout=5).json()["access_token"]
    second = requests.get(sandbox_reset.wechat_url + TOKEN, params=params, timeout=5).json()["access_token"]
    assert first != second
    assert state.check_token("wechat", first)[0] == 0  # both valid during the overlap
    state.advance(state.TOKEN_OVERLAP + 1)
    assert state.check_token("wechat", first)[0] == 40001
    assert state.check_token("wechat", second)[0] == 0
    assert state.check_token("wechat", "unknown")[0] == 40001
    state.advance(state.TOKEN_TTL)
    assert state.check_token("wechat", second)[0] == 42001


@pytest.mark.redis
def test_token_shared_through_redis_between_processes(clients, redis_client):
    sandbox = clients.sandbox
    state = sandbox.state
    state.add_user("oOwner1")
    state.set_subscribe_grants("oOwner1", "TPL_SERVICE", 2)
    # Two clients with their own caches on the same Redis = two gunicorn workers.
    worker_a = clients.miniprogram(tokens=TokenCache(redis_client, namespace=redis_client.namespace))
    worker_b = clients.miniprogram(tokens=TokenCache(redis_client, namespace=redis_client.namespace))
    data = {"thing1": {"value": "保养提醒"}}
    worker_a.send_subscribe_message("oOwner1", "TPL_SERVICE", data)
    worker_b.send_subscribe_message("oOwner1", "TPL_SERVICE", data)
    assert sandbox.hits(TOKEN) == 1
    key = f"{redis_client.namespace}:token:wechat:{sandbox.credentials['WECHAT_APP_ID']}"
    assert redis_client.exists(key)


@pytest.mark.redis
def test_token_refreshed_once_under_concurrency(clients, redis_client):
    sandbox = clients.sandbox
    sandbox.state.add_user("oOwner1")
    sandbox.state.set_subscribe_grants("oOwner1", "TPL_SERVICE", 100)
    # A slow token endpoint widens the race: everyone arrives while the first fetch is in flight.
    sandbox.state.set_fault("slow", seconds=0.3, path=TOKEN, service="wechat", count=1)
    workers = [clients.miniprogram(tokens=TokenCache(redis_client, namespace=redis_client.namespace)) for _ in range(8)]
    barrier = threading.Barrier(len(workers) * 2)
    errors: list[BaseException] = []

    def run(client):
        barrier.wait()
        try:
            client.send_subscribe_message("oOwner1", "TPL_SERVICE", {"thing1": {"value": "到店提醒"}})
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert sandbox.hits(TOKEN) == 1
    assert sandbox.hits(SUBSCRIBE) == 16


def test_token_refreshed_once_in_memory_across_threads(clients):
    sandbox = clients.sandbox
    sandbox.state.set_fault("slow", seconds=0.3, path=TOKEN, service="wechat", count=1)
    mp = clients.miniprogram()
    codes = [sandbox.state.issue_login_code(f"oOwner{i}") for i in range(10)]
    results: list[str] = []
    threads = [threading.Thread(target=lambda c=c: results.append(mp.code_to_session(c).openid)) for c in codes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == sorted(f"oOwner{i}" for i in range(10))
    assert sandbox.hits(TOKEN) == 1


def test_expired_token_42001_one_bounded_retry(clients):
    sandbox = clients.sandbox
    state = sandbox.state
    state.add_user("oOwner1")
    state.set_subscribe_grants("oOwner1", "TPL", 2)
    mp = clients.miniprogram()
    mp.send_subscribe_message("oOwner1", "TPL", {"thing1": {"value": "a"}})
    assert sandbox.hits(TOKEN) == 1

    state.expire_tokens("wechat")  # upstream expired it early; our cache still thinks it is fresh
    mp.send_subscribe_message("oOwner1", "TPL", {"thing1": {"value": "b"}})

    assert sandbox.hits(TOKEN) == 2  # exactly one extra token fetch
    attempts = state.received(SUBSCRIBE)
    assert len(attempts) == 3
    assert attempts[1]["query"]["access_token"] != attempts[2]["query"]["access_token"]
    assert [m["data"]["thing1"]["value"] for m in state.subscribe_messages] == ["a", "b"]


def test_permanent_40001_gives_up_after_two_attempts(clients):
    sandbox = clients.sandbox
    sandbox.state.add_user("oOwner1")
    sandbox.state.set_fault("errcode", errcode=40001, path=SUBSCRIBE, service="wechat")
    mp = clients.miniprogram()
    with pytest.raises(UpstreamError) as err:
        mp.send_subscribe_message("oOwner1", "TPL", {"thing1": {"value": "a"}})
    assert (err.value.reason, err.value.errcode) == ("rejected", 40001)
    assert sandbox.hits(SUBSCRIBE) == 2
    assert sandbox.hits(TOKEN) == 2


def test_sandbox_down_is_unavailable(clients):
    clients.sandbox.state.set_fault("down", service="wechat")
    with pytest.raises(UpstreamError) as err:
        clients.miniprogram().code_to_session("any")
    assert err.value.reason == "unavailable"
    assert err.value.errcode is None


def test_api_down_with_cached_token_is_unavailable(clients):
    state = clients.sandbox.state
    mp = clients.miniprogram()
    mp.code_to_session(state.issue_login_code("oOwner1"))
    state.set_fault("down", path="/sns/", service="wechat")
    with pytest.raises(UpstreamError) as err:
        mp.code_to_session(state.issue_login_code("oOwner1"))
    assert err.value.reason == "unavailable"


def test_connection_refused_is_unavailable(sandbox_reset):
    from integrations.wechat.client import MiniProgramClient

    with socket_port() as port:
        pass  # the port is free again: nothing listens on it
    mp = MiniProgramClient("wx1", "s", api_base=f"http://127.0.0.1:{port}", timeout=0.5)
    try:
        with pytest.raises(UpstreamError) as err:
            mp.code_to_session("any")
        assert err.value.reason == "unavailable"
    finally:
        mp.close()


def test_slow_sandbox_is_timeout_within_bound(clients):
    state = clients.sandbox.state
    mp = clients.miniprogram(timeout=0.3)
    mp.code_to_session(state.issue_login_code("oOwner1"))  # token cached
    state.set_fault("slow", seconds=5, path="/sns/", service="wechat")
    started = time.monotonic()
    with pytest.raises(UpstreamError) as err:
        mp.code_to_session(state.issue_login_code("oOwner1"))
    elapsed = time.monotonic() - started
    assert err.value.reason == "timeout"
    assert elapsed < 1.5


def test_slow_token_endpoint_is_timeout(clients):
    clients.sandbox.state.set_fault("slow", seconds=5, path=TOKEN, service="wechat")
    started = time.monotonic()
    with pytest.raises(UpstreamError) as err:
        clients.miniprogram(timeout=0.3).get_phone_number("any")
    assert err.value.reason == "timeout"
    assert time.monotonic() - started < 1.5


def test_errcode_fault_with_count(clients):
    state = clients.sandbox.state
    state.set_fault("errcode", errcode=45009, path="/sns/", service="wechat", count=1)
    mp = clients.miniprogram()
    with pytest.raises(UpstreamError) as err:
        mp.code_to_session(state.issue_login_code("oOwner1"))
    assert err.value.errcode == 45009
    assert mp.code_to_session(state.issue_login_code("oOwner1")).openid == "oOwner1"


def test_phone_number_code(clients):
    state = clients.sandbox.state
    mp = clients.miniprogram()
    code = state.issue_phone_code("13812345678")
    assert mp.get_phone_number(code) == "13812345678"
    with pytest.raises(UpstreamError) as err:
        mp.get_phone_number(code)
    assert err.value.errcode == 40029
    with pytest.raises(UpstreamError) as err:
        mp.get_phone_number("bogus")
    assert err.value.errcode == 40029


def test_phone_endpoint_checks_token(sandbox_reset):
    url = sandbox_reset.wechat_url + "/wxa/business/getuserphonenumber"
    code = sandbox_reset.state.issue_phone_code("13812345678")
    unknown = requests.post(url, params={"access_token": "nope"}, json={"code": code}, timeout=5).json()
    missing = requests.post(url, json={"code": code}, timeout=5).json()
    assert unknown["errcode"] == 40001
    assert missing["errcode"] == 41001


def test_subscribe_send_and_43101(clients):
    state = clients.sandbox.state
    mp = clients.miniprogram()
    state.set_subscribe_grants("oOwner1", "TPL_BOOKING", 1)
    data = {"thing1": {"value": "首保到期"}, "time2": {"value": "2025-06-01 10:00"}}
    mp.send_subscribe_message(
        "oOwner1", "TPL_BOOKING", data, page="pages/booking/detail?id=1", miniprogram_state="trial"
    )
    sent = state.subscribe_messages[-1]
    assert sent["touser"] == "oOwner1"
    assert sent["miniprogram_state"] == "trial"
    assert sent["page"] == "pages/booking/detail?id=1"
    with pytest.raises(UpstreamError) as err:
        mp.send_subscribe_message("oOwner1", "TPL_BOOKING", data)
    assert err.value.errcode == 43101


def test_subscribe_send_validation(clients):
    state = clients.sandbox.state
    mp = clients.miniprogram()
    state.set_subscribe_grants("oOwner1", "TPL", 5)
    with pytest.raises(UpstreamError) as err:
        mp.send_subscribe_message("oStranger", "TPL", {"thing1": {"value": "x"}})
    assert err.value.errcode == 40003
    with pytest.raises(UpstreamError) as err:
        mp.send_subscribe_message("oOwner1", "TPL", {"thing1": {"value": "超" * 21}})
    assert err.value.errcode == 47003
    assert "thing1" in err.value.errmsg


def test_subscribe_grants_via_control_endpoint(clients):
    sandbox = clients.sandbox
    requests.post(
        sandbox.wechat_url + "/_sandbox/subscribe-grants",
        json={"openid": "oOwner7", "template_id": "TPL", "count": 1},
        timeout=5,
    ).raise_for_status()
    clients.miniprogram().send_subscribe_message("oOwner7", "TPL", {"thing1": {"value": "x"}})
    phone_code = requests.post(
        sandbox.wechat_url + "/_sandbox/phone-code", json={"phone": "13900001111"}, timeout=5
    ).json()["code"]
    assert clients.miniprogram().get_phone_number(phone_code) == "13900001111"


class socket_port:
    """A free local port (bound then released)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return self._sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
