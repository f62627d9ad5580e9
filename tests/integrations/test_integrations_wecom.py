"""WeCom adapter (wechatpy.enterprise 1.8.18) and the WeCom sandbox, on 127.0.0.1."""

from __future__ import annotations

import hashlib

import pytest
import requests
import xmltodict
from wechatpy.enterprise.crypto import WeChatCrypto

from backend.platform.ports import UpstreamError, WeComUser

OFFICIAL_TICKET = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"
OFFICIAL_SIGNATURE = "0f9de62fce790f9a083d5c99e95740ceb90c27ed"


def test_oauth_member(clients):
    wecom = clients.wecom()
    code = clients.sandbox.state.issue_oauth_code("advisor.zhang")
    assert wecom.get_user_info(code) == WeComUser(userid="advisor.zhang")
    assert clients.sandbox.hits("/cgi-bin/auth/getuserinfo") == 1  # the current API, not the legacy one


def test_oauth_outsider(clients):
    code = clients.sandbox.state.issue_oauth_code(external_userid="wmOutsider", openid="oOutsider")
    assert clients.wecom().get_user_info(code) == WeComUser(
        userid=None, external_userid="wmOutsider", openid="oOutsider"
    )


def test_oauth_unknown_or_reused_code_is_40029(clients):
    wecom = clients.wecom()
    with pytest.raises(UpstreamError) as err:
        wecom.get_user_info("bogus")
    assert (err.value.reason, err.value.errcode, err.value.service) == ("rejected", 40029, "wecom")
    code = requests.post(
        clients.sandbox.wecom_url + "/_sandbox/oauth-code", json={"userid": "advisor.li"}, timeout=5
    ).json()["code"]
    assert wecom.get_user_info(code).userid == "advisor.li"
    with pytest.raises(UpstreamError) as err:
        wecom.get_user_info(code)
    assert err.value.errcode == 40029


def test_legacy_getuserinfo(clients):
    code = clients.sandbox.state.issue_oauth_code("advisor.zhang")
    assert clients.wecom().get("user/getuserinfo", {"code": code})["UserId"] == "advisor.zhang"


def test_gettoken_returns_same_token_while_valid(sandbox_reset):
    creds = sandbox_reset.credentials
    params = {"corpid": creds["WECOM_CORP_ID"], "corpsecret": creds["WECOM_SECRET"]}
    first = requests.get(sandbox_reset.wecom_url + "/cgi-bin/gettoken", params=params, timeout=5).json()
    second = requests.get(sandbox_reset.wecom_url + "/cgi-bin/gettoken", params=params, timeout=5).json()
    assert first["errcode"] == 0
    assert first["access_token"] == second["access_token"]
    bad = requests.get(
        sandbox_reset.wecom_url + "/cgi-bin/gettoken", params={**params, "corpsecret": "wrong"}, timeout=5
    ).json()
    assert bad["errcode"] == 40001


def test_wecom_42001_one_bounded_retry(clients):
    sandbox = clients.sandbox
    wecom = clients.wecom()
    wecom.get("externalcontact/get", {"external_userid": "wmDemoCustomer001"})
    sandbox.state.expire_tokens("wecom")
    result = wecom.get("externalcontact/get", {"external_userid": "wmDemoCustomer001"})
    assert result["external_contact"]["name"] == "陈先生"
    assert sandbox.hits("/cgi-bin/gettoken") == 2
    assert sandbox.hits("/cgi-bin/externalcontact/get") == 3


def test_wecom_revoked_token_40014_then_retry(clients):
    sandbox = clients.sandbox
    wecom = clients.wecom()
    wecom.get("externalcontact/list", {"userid": "advisor.zhang"})
    sandbox.state.revoke_tokens("wecom")
    assert wecom.get("externalcontact/list", {"userid": "advisor.zhang"})["external_userid"] == ["wmDemoCustomer001"]
    assert sandbox.hits("/cgi-bin/gettoken") == 2


def test_jsapi_signature_matches_official_example(clients):
    clients.sandbox.state.set_jsapi_ticket(OFFICIAL_TICKET)
    signed = clients.wecom().jsapi_signature(
        "http://mp.weixin.qq.com?params=value#fragment", nonce_str="Wm3WZYTPz0wzccnW", timestamp=1414587457
    )
    assert signed["signature"] == OFFICIAL_SIGNATURE
    assert signed["nonceStr"] == "Wm3WZYTPz0wzccnW"
    assert signed["timestamp"] == 1414587457
    assert signed["corpid"] == clients.sandbox.credentials["WECOM_CORP_ID"]


def test_jsapi_tickets_cached_per_corp_and_per_agent(clients):
    sandbox = clients.sandbox
    wecom = clients.wecom()
    url = "https://workbench.example.com/sidebar?x=1"
    corp = wecom.jsapi_signature(url)
    wecom.jsapi_signature(url)
    agent = wecom.jsapi_signature(url, agent=True)
    wecom.jsapi_signature(url, agent=True)
    assert sandbox.hits("/cgi-bin/get_jsapi_ticket") == 1
    assert sandbox.hits("/cgi-bin/ticket/get") == 1
    assert agent["agentid"] == sandbox.credentials["WECOM_AGENT_ID"]
    assert "agentid" not in corp
    corp_key = wecom.tokens.key("wecom_jsapi_ticket", wecom.corp_id)
    agent_key = wecom.tokens.key("wecom_agent_ticket", f"{wecom.corp_id}:{wecom.agent_id}")
    corp_ticket, agent_ticket = wecom.tokens.peek(corp_key).value, wecom.tokens.peek(agent_key).value
    assert corp_ticket != agent_ticket
    expected = hashlib.sha1(  # noqa: S324 - the JS-SDK algorithm
        f"jsapi_ticket={agent_ticket}&noncestr={agent['nonceStr']}&timestamp={agent['timestamp']}&url={url}".encode()
    ).hexdigest()
    assert agent["signature"] == expected


def test_external_contact_detail_and_batch(clients):
    wecom = clients.wecom()
    detail = wecom.get("externalcontact/get", {"external_userid": "wmDemoCustomer001"})
    follow = detail["follow_user"][0]
    assert (follow["userid"], follow["state"]) == ("advisor.zhang", "store01")
    assert follow["tags"][0]["tag_name"] == "SUV"
    with pytest.raises(UpstreamError) as err:
        wecom.get("externalcontact/get", {"external_userid": "wmNobody"})
    assert err.value.errcode == 84061
    batch = wecom.post(
        "externalcontact/batch/get_by_user",
        {"userid_list": ["advisor.zhang", "advisor.wang"], "cursor": "", "limit": 1},
    )
    assert len(batch["external_contact_list"]) == 1
    rest = wecom.post(
        "externalcontact/batch/get_by_user",
        {"userid_list": ["advisor.zhang", "advisor.wang"], "cursor": batch["next_cursor"], "limit": 1},
    )
    assert rest["next_cursor"] == ""
    names = {r["external_contact"]["name"] for r in batch["external_contact_list"] + rest["external_contact_list"]}
    assert names == {"陈先生", "刘女士"}


def test_contact_way_tags_and_welcome_message(clients):
    state = clients.sandbox.state
    wecom = clients.wecom()
    way = wecom.post(
        "externalcontact/add_contact_way",
        {"type": 1, "scene": 2, "state": "campaign-618", "user": ["advisor.zhang"], "skip_verify": True},
    )
    assert way["qr_code"] and way["config_id"]
    assert state.contact_ways[way["config_id"]]["state"] == "campaign-618"
    wecom.post("externalcontact/update_contact_way", {"config_id": way["config_id"], "remark": "618"})
    with pytest.raises(UpstreamError):
        wecom.post(
            "externalcontact/add_contact_way",
            {"type": 1, "scene": 2, "state": "x" * 31, "user": ["advisor.zhang"]},
        )
    wecom.post("externalcontact/del_contact_way", {"config_id": way["config_id"]})
    assert way["config_id"] not in state.contact_ways

    groups = wecom.post("externalcontact/get_corp_tag_list", {})["tag_group"]
    level_a = next(t["id"] for g in groups if g["group_name"] == "客户等级" for t in g["tag"] if t["name"] == "A")
    wecom.post(
        "externalcontact/mark_tag",
        {"userid": "advisor.zhang", "external_userid": "wmDemoCustomer001", "add_tag": [level_a]},
    )
    tags = wecom.get("externalcontact/get", {"external_userid": "wmDemoCustomer001"})["follow_user"][0]["tags"]
    assert {t["tag_name"] for t in tags} == {"SUV", "A"}

    welcome_code = state.issue_welcome_code("advisor.zhang", "wmDemoCustomer001")
    message = {
        "welcome_code": welcome_code,
        "text": {"content": "您好，我是张顾问"},
        "attachments": [{"msgtype": "link", "link": {"title": "保养预约", "url": "https://x.test"}}],
    }
    wecom.post("externalcontact/send_welcome_msg", message)
    with pytest.raises(UpstreamError) as err:
        wecom.post("externalcontact/send_welcome_msg", message)
    assert err.value.errcode == 41051
    assert len(state.welcome_messages) == 1


def test_resigned_transfer_and_app_message(clients):
    state = clients.sandbox.state
    wecom = clients.wecom()
    result = wecom.post(
        "externalcontact/resigned/transfer_customer",
        {
            "handover_userid": "advisor.wang",
            "takeover_userid": "advisor.li",
            "external_userid": ["wmDemoCustomer002", "wmNobody"],
        },
    )
    assert [c["errcode"] for c in result["customer"]] == [0, 84061]
    pending = wecom.post(
        "externalcontact/resigned/transfer_result",
        {"handover_userid": "advisor.wang", "takeover_userid": "advisor.li", "cursor": ""},
    )
    assert pending["customer"][0]["status"] == 2
    state.complete_transfers()
    done = wecom.post(
        "externalcontact/resigned/transfer_result",
        {"handover_userid": "advisor.wang", "takeover_userid": "advisor.li", "cursor": ""},
    )
    assert done["customer"][0]["status"] == 1
    assert wecom.get("externalcontact/list", {"userid": "advisor.li"})["external_userid"] == ["wmDemoCustomer002"]

    sent = wecom.post(
        "message/send",
        {
            "touser": "advisor.li|ghost",
            "msgtype": "text",
            "agentid": int(wecom.agent_id),
            "text": {"content": "新客户已转给您"},
        },
    )
    assert sent["invaliduser"] == "ghost"
    with pytest.raises(UpstreamError) as err:
        wecom.post(
            "message/send",
            {"touser": "advisor.li", "msgtype": "text", "agentid": 1, "text": {"content": "x"}},
        )
    assert err.value.errcode == 301002


def test_behavior_data(clients):
    state = clients.sandbox.state
    day = 1748707200  # 2025-06-01 00:00 +08:00
    state.set_behavior("advisor.zhang", day, chat_cnt=3, message_cnt=12, new_contact_cnt=2)
    result = clients.wecom().post(
        "externalcontact/get_user_behavior_data",
        {"userid": ["advisor.zhang"], "start_time": day, "end_time": day + 86400},
    )
    rows = result["behavior_data"]
    assert [r["stat_time"] for r in rows] == [day, day + 86400]
    assert (rows[0]["chat_cnt"], rows[0]["message_cnt"], rows[1]["chat_cnt"]) == (3, 12, 0)


def test_callback_helper_decrypts_with_wechatpy(sandbox_reset):
    creds = sandbox_reset.credentials
    state = sandbox_reset.state
    plaintext = state.change_external_contact_xml(
        creds["WECOM_CORP_ID"],
        "add_external_contact",
        "advisor.zhang",
        "wmNew001",
        1748707200,
        State="campaign-618",
        WelcomeCode="WELCOME123",
    )
    params, body = state.wecom_callback(plaintext)
    crypto = WeChatCrypto(creds["WECOM_CALLBACK_TOKEN"], creds["WECOM_CALLBACK_AES_KEY"], creds["WECOM_CORP_ID"])
    decrypted = crypto.decrypt_message(body, params["msg_signature"], params["timestamp"], params["nonce"])
    assert decrypted == plaintext
    event = xmltodict.parse(decrypted)["xml"]
    assert (event["ChangeType"], event["ExternalUserID"], event["State"]) == (
        "add_external_contact",
        "wmNew001",
        "campaign-618",
    )

    verify = state.wecom_verify_url_params("echo-4711")
    assert (
        crypto.check_signature(verify["msg_signature"], verify["timestamp"], verify["nonce"], verify["echostr"])
        == "echo-4711"
    )


def test_callback_helper_reads_wechatpy_replies(sandbox_reset):
    creds = sandbox_reset.credentials
    crypto = WeChatCrypto(creds["WECOM_CALLBACK_TOKEN"], creds["WECOM_CALLBACK_AES_KEY"], creds["WECOM_CORP_ID"])
    reply = crypto.encrypt_message("<xml><Content>收到</Content></xml>", "12345", "1748707200")
    encrypted = xmltodict.parse(reply)["xml"]["Encrypt"]
    assert sandbox_reset.state.wecom_decrypt(encrypted) == "<xml><Content>收到</Content></xml>"


def test_wecom_down_and_token_check(clients):
    sandbox = clients.sandbox
    unknown = requests.get(
        sandbox.wecom_url + "/cgi-bin/externalcontact/get",
        params={"access_token": "nope", "external_userid": "x"},
        timeout=5,
    ).json()
    assert unknown["errcode"] == 40014
    requests.post(sandbox.wecom_url + "/_sandbox/faults", json={"mode": "down"}, timeout=5).raise_for_status()
    with pytest.raises(UpstreamError) as err:
        clients.wecom().get_user_info("x")
    assert err.value.reason == "unavailable"
