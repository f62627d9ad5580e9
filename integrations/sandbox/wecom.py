"""Fake of qyapi.weixin.qq.com (and of open.weixin.qq.com's OAuth2 authorize page): token,
OAuth, JS-SDK tickets, customer contact, app messages."""

from __future__ import annotations

import copy
import json
import os
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Flask, Response, redirect, request

from .common import CONTROL_PREFIX, answer, errcode_body, fail, json_body, make_app, ok
from .state import CHINA_TZ, IssuedToken, SandboxState

SERVICE = "wecom"
DAY = 86400
WELCOME_MSGTYPES = ("image", "link", "miniprogram", "video", "file")
MB = 1024 * 1024
MEDIA_LIMITS = {"image": 10 * MB, "voice": 2 * MB, "video": 10 * MB, "file": 20 * MB}  # media/upload, bytes
APP_MSGTYPES = (
    "text",
    "textcard",
    "news",
    "markdown",
    "miniprogram_notice",
    "template_card",
    "image",
    "file",
)


def _china_midnight(ts: int) -> int:
    offset = int(CHINA_TZ.utcoffset(None).total_seconds())
    return (ts + offset) // DAY * DAY - offset


def create_wecom_app(state: SandboxState) -> Flask:
    app = make_app(SERVICE, state)
    creds = state.credentials
    corp_id = creds["WECOM_CORP_ID"]
    agent_id = str(creds["WECOM_AGENT_ID"])

    def authorised() -> tuple[Response | None, IssuedToken | None]:
        errcode, info = state.check_token(SERVICE, request.args.get("access_token"))
        return (fail(errcode), None) if errcode else (None, info)

    def authorised_body() -> tuple[Response | None, IssuedToken | None, dict[str, Any]]:
        """The caller's token (its agent matters to some APIs) and its JSON body, or the refusal."""
        bad, info = authorised()
        if bad:
            return bad, None, {}
        data = json_body()
        if data is None:
            return fail(47001), None, {}
        return None, info, data

    def body_or_fail() -> tuple[Response | None, dict[str, Any]]:
        bad, _, data = authorised_body()
        return bad, data

    def contact_view(external_userid: str) -> dict[str, Any]:
        follows = state.follows_of_contact(external_userid)
        follow_user = []
        for f in follows:
            tags = []
            for tag_id in f.pop("tag_ids"):
                # type 1: a corporate tag, 3: a rule-group tag (规则组标签); a deleted one is
                # no longer shown
                for find, tag_type in ((state.find_tag, 1), (state.find_strategy_tag, 3)):
                    found = find(tag_id)
                    if found:
                        group, tag = found
                        tags.append(
                            {
                                "group_name": group["group_name"],
                                "tag_name": tag["name"],
                                "tag_id": tag_id,
                                "type": tag_type,
                            }
                        )
                        break
            follow_user.append({**f, "tags": tags})
        return {
            "external_contact": copy.deepcopy(state.external_contacts[external_userid]),
            "follow_user": follow_user,
        }

    # --- token, OAuth, tickets ---------------------------------------------------------
    @app.get("/cgi-bin/gettoken")
    def gettoken() -> Response:
        if request.args.get("corpid") != corp_id:
            return fail(40013, "invalid corpid")
        if request.args.get("corpsecret") != creds["WECOM_SECRET"]:
            return fail(40001, "invalid credential, corpsecret is invalid")
        token, expires_in = state.issue_token(SERVICE, f"{corp_id}:{agent_id}", reuse_valid=True)
        return ok(access_token=token, expires_in=expires_in)

    def oauth_lookup() -> tuple[Response | None, dict[str, Any]]:
        bad, _ = authorised()
        if bad:
            return bad, {}
        status, payload = state.consume_oauth_code(request.args.get("code"))
        if status != "ok" or payload is None:
            return fail(40029), {}
        return None, payload

    @app.get("/cgi-bin/auth/getuserinfo")
    def auth_getuserinfo() -> Response:
        bad, who = oauth_lookup()
        if bad:
            return bad
        if who.get("userid"):
            return ok(userid=who["userid"], user_ticket=state.new_id("", 48), expires_in=1800)
        fields = {"openid": who["openid"]}
        if who.get("external_userid"):
            fields["external_userid"] = who["external_userid"]
        return ok(**fields)

    @app.get("/cgi-bin/user/getuserinfo")
    def legacy_getuserinfo() -> Response:
        bad, who = oauth_lookup()
        if bad:
            return bad
        if who.get("userid"):
            return ok(UserId=who["userid"], DeviceId="")
        fields = {"OpenId": who["openid"], "DeviceId": ""}
        if who.get("external_userid"):
            fields["external_userid"] = who["external_userid"]
        return ok(**fields)

    @app.get("/connect/oauth2/authorize")
    def oauth2_authorize() -> Response:
        """open.weixin.qq.com's page: checks the app's parameters, then sends the signed-in
        member back to `redirect_uri` with a one-time code and the caller's `state`."""
        args = request.args
        if args.get("appid") != corp_id:
            return answer(errcode_body(40013, "invalid corpid"), status=400)
        scope = args.get("scope")
        if args.get("response_type") != "code" or scope not in ("snsapi_base", "snsapi_privateinfo"):
            return answer(errcode_body(40058, "response_type must be code, scope snsapi_base/snsapi_privateinfo"), 400)
        # agentid is optional for snsapi_base, required for snsapi_privateinfo; when given, this app's.
        if args.get("agentid", agent_id) != agent_id or (scope == "snsapi_privateinfo" and not args.get("agentid")):
            return answer(errcode_body(40056, "invalid agentid"), status=400)
        target = urlsplit(args.get("redirect_uri", ""))
        if target.scheme not in ("http", "https") or not target.netloc:
            return answer(errcode_body(40058, "redirect_uri must be an absolute http(s) URL"), status=400)
        # WeCom sends the code only to the app's trusted domain: anywhere else, a link could
        # carry a member's code off to whoever wrote it.
        if (target.hostname or "") not in state.wecom_trusted_hosts:
            return answer(errcode_body(50001, "redirect_uri is not in the app's trusted domain"), status=400)
        try:
            code = state.authorize_member()
        except LookupError as exc:  # nobody signed in: the developer or test forgot to say who
            return answer({"error": str(exc)}, status=400)
        except ValueError:
            return answer(errcode_body(60111, "invalid userid"), status=400)
        query = parse_qsl(target.query, keep_blank_values=True) + [("code", code), ("state", args.get("state", ""))]
        return redirect(urlunsplit(target._replace(query=urlencode(query), fragment="")), code=302)

    @app.get("/cgi-bin/get_jsapi_ticket")
    def get_jsapi_ticket() -> Response:
        bad, _ = authorised()
        if bad:
            return bad
        ticket, expires_in = state.issue_ticket("corp")
        return ok(ticket=ticket, expires_in=expires_in)

    @app.get("/cgi-bin/ticket/get")
    def ticket_get() -> Response:
        bad, info = authorised()
        if bad or info is None:
            return bad or fail(40014)
        if request.args.get("type") != "agent_config":
            return fail(40058, "invalid type")
        ticket, expires_in = state.issue_ticket("agent:" + info.owner.split(":", 1)[1])
        return ok(ticket=ticket, expires_in=expires_in)

    # --- external contacts -------------------------------------------------------------
    @app.get("/cgi-bin/externalcontact/get")
    def externalcontact_get() -> Response:
        bad, _ = authorised()
        if bad:
            return bad
        ext = request.args.get("external_userid", "")
        with state.lock:
            if ext not in state.external_contacts:
                return fail(84061)
            return ok(**contact_view(ext), next_cursor="")

    @app.get("/cgi-bin/externalcontact/list")
    def externalcontact_list() -> Response:
        bad, _ = authorised()
        if bad:
            return bad
        userid = request.args.get("userid", "")
        with state.lock:
            if userid not in state.members:
                return fail(60111)
            ids = [e for (u, e) in state.follows if u == userid]
        if not ids:
            return fail(84061)
        return ok(external_userid=ids)

    @app.post("/cgi-bin/externalcontact/batch/get_by_user")
    def batch_get_by_user() -> Response:
        bad, data = body_or_fail()
        if bad:
            return bad
        userids = data.get("userid_list")
        if not isinstance(userids, list) or not 1 <= len(userids) <= 100:
            return fail(40058, "userid_list must hold 1..100 userids")
        limit = data.get("limit", 50)
        if not isinstance(limit, int) or not 1 <= limit <= 100:
            return fail(40058, "limit must be 1..100")
        try:
            start = int(data.get("cursor") or 0)
        except ValueError:
            return fail(40058, "invalid cursor")
        with state.lock:
            unknown = [u for u in userids if u not in state.members]
            if unknown:
                return fail(60111, f"invalid userid {unknown[0]}")
            rows = []
            for (u, e), follow in sorted(state.follows.items()):
                if u not in userids:
                    continue
                follow_info = {k: v for k, v in copy.deepcopy(follow).items() if k != "tag_ids"}
                follow_info["tag_id"] = list(follow["tag_ids"])
                rows.append(
                    {
                        "external_contact": copy.deepcopy(state.external_contacts[e]),
                        "follow_info": follow_info,
                    }
                )
        page = rows[start : start + limit]
        next_cursor = str(start + limit) if start + limit < len(rows) else ""
        return ok(external_contact_list=page, next_cursor=next_cursor, fail_info={"unlicensed_userid_list": []})

    def validate_contact_way(data: dict[str, Any], creating: bool) -> Response | None:
        if creating:
            if data.get("type") not in (1, 2):
                return fail(40058, "invalid type")
            if data.get("scene") not in (1, 2):
                return fail(40058, "invalid scene")
            users = data.get("user") or []
            if not users and not data.get("party"):
                return fail(40058, "user or party is required")
            if data["type"] == 1 and len(users) + len(data.get("party") or []) != 1:
                return fail(40058, "a single contact way takes exactly one member")
        state_value = data.get("state")
        if state_value is not None and (not isinstance(state_value, str) or len(state_value) > 30):
            return fail(40058, "state must be a string of at most 30 chars")
        with state.lock:
            unknown = [u for u in data.get("user") or [] if u not in state.members]
        if unknown:
            return fail(60111, f"invalid userid {unknown[0]}")
        return None

    @app.post("/cgi-bin/externalcontact/add_contact_way")
    def add_contact_way() -> Response:
        bad, data = body_or_fail()
        if bad:
            return bad
        bad = validate_contact_way(data, creating=True)
        if bad:
            return bad
        config_id = os.urandom(16).hex()
        way = {**data, "config_id": config_id}
        if data["scene"] == 2:
            way["qr_code"] = f"https://wework.qpic.cn/sandbox/{config_id}/0"
        with state.lock:
            state.contact_ways[config_id] = way
            state.contact_way_created[config_id] = int(time.time())
        return ok(config_id=config_id, **({"qr_code": way["qr_code"]} if "qr_code" in way else {}))

    @app.post("/cgi-bin/externalcontact/update_contact_way")
    def update_contact_way() -> Response:
        bad, data = body_or_fail()
        if bad:
            return bad
        with state.lock:
            way = state.contact_ways.get(data.get("config_id", ""))
            if way is None:
                return fail(40058, "invalid config_id")
            bad = validate_contact_way(data, creating=False)
            if bad:
                return bad
            if way.get("type") == 1 and "user" in data and len(data.get("user") or []) != 1:
                return fail(40058, "a single contact way takes exactly one member")  # its type is fixed
            way.update({k: v for k, v in data.items() if k not in ("config_id", "type", "scene")})
        return ok()

    @app.post("/cgi-bin/externalcontact/del_contact_way")
    def del_contact_way() -> Response:
        bad, data = body_or_fail()
        if bad:
            return bad
        with state.lock:
            if state.contact_ways.pop(data.get("config_id", ""), None) is None:
                return fail(40058, "invalid config_id")
        return ok()

    @app.post("/cgi-bin/externalcontact/get_contact_way")
    def get_contact_way() -> Response:
        bad, data = body_or_fail()
        if bad:
            return bad
        with state.lock:
            way = state.contact_ways.get(data.get("config_id", ""))
            if way is None:
                return fail(40058, "invalid config_id")
            return ok(contact_way=copy.deepcopy(way))

    @app.post("/cgi-bin/externalcontact/list_contact_way")
    def list_contact_way() -> Response:
        """The contact ways made through the API, created within [start_time, end_time] (the
        last 90 days by default; a wider range is refused), `limit` ≤ 1000 per page."""
        bad, data = body_or_fail()
        if bad:
            return bad
        now = int(time.time())
        end = int(data.get("end_time") or now)
        start = int(data.get("start_time") or end - 90 * 86400)
        limit = int(data.get("limit") or 100)
        if start > end or end - start > 90 * 86400 or not 0 < limit <= 1000:
            return fail(40058, "invalid start_time / end_time / limit")
        with state.lock:
            created = state.contact_way_created
            ids = sorted(cid for cid in state.contact_ways if start <= created.get(cid, 0) <= end)
        offset = int(data.get("cursor") or 0)
        page = ids[offset : offset + limit]
        next_cursor = str(offset + limit) if offset + limit < len(ids) else ""
        return ok(contact_way=[{"config_id": cid} for cid in page], next_cursor=next_cursor)

    def agent_of(info: IssuedToken | None) -> str:
        return info.owner.split(":", 1)[1] if info else ""

    def strategy_tag_refused(tag_id: str, userid: str, agent: str) -> bool | None:
        """None: not a rule-group tag. Else whether mark_tag refuses it: a rule group's tag is
        usable only by the app that created it, for members in the group's range (doc 92697;
        WeCom's errcode for this was not found: 40068 is answered, as for an unknown tag)."""
        found = state.find_strategy_tag(tag_id)
        if found is None:
            return None
        group, _ = found
        members = state.strategies.get(group["strategy_id"], {}).get("range")
        return state.strategy_group_creator.get(group["group_id"]) != agent or (
            members is not None and userid not in members
        )

    @app.post("/cgi-bin/externalcontact/mark_tag")
    def mark_tag() -> Response:
        bad, info, data = authorised_body()
        if bad:
            return bad
        add = data.get("add_tag") or []
        remove = data.get("remove_tag") or []
        if not add and not remove:
            return fail(40058, "add_tag and remove_tag are both empty")
        with state.lock:
            follow = state.follows.get((data.get("userid", ""), data.get("external_userid", "")))
            if follow is None:
                return fail(84061)
            for tag_id in [*add, *remove]:
                refused = strategy_tag_refused(tag_id, data.get("userid", ""), agent_of(info))
                if refused or (refused is None and state.find_tag(tag_id) is None):
                    return fail(40068)
            tags = [t for t in follow["tag_ids"] if t not in remove]
            tags += [t for t in add if t not in tags]
            follow["tag_ids"] = tags
        return ok()

    @app.post("/cgi-bin/externalcontact/get_corp_tag_list")
    def get_corp_tag_list() -> Response:
        bad, _ = authorised()
        if bad:
            return bad
        data = json_body() or {}
        with state.lock:
            groups = copy.deepcopy(list(state.tag_groups.values()))
        return ok(tag_group=tag_list_filter(groups, set(data.get("tag_id") or []), set(data.get("group_id") or [])))

    def tag_list_filter(groups: list[dict[str, Any]], tag_ids: set[str], group_ids: set[str]) -> list[dict[str, Any]]:
        """The filter of get_corp_tag_list and get_strategy_tag_list (on copies): group_id wins
        over tag_id; neither: every tag."""
        if group_ids:
            return [g for g in groups if g["group_id"] in group_ids]
        if tag_ids:
            for g in groups:
                g["tag"] = [t for t in g["tag"] if t["id"] in tag_ids]
            return [g for g in groups if g["tag"]]
        return groups

    # --- rule-group (规则组) tags: doc 94882 -------------------------------------------------
    @app.post("/cgi-bin/externalcontact/get_strategy_tag_list")
    def get_strategy_tag_list() -> Response:
        """The rule-group tags this app created (doc 99544: an app gets only its own), of one
        rule group when `strategy_id` is given (optional)."""
        bad, info = authorised()
        if bad:
            return bad
        data = json_body() or {}
        strategy_id = data.get("strategy_id")
        if strategy_id is not None and (not isinstance(strategy_id, int) or strategy_id not in state.strategies):
            return fail(40058, "invalid strategy_id")
        agent = agent_of(info)
        with state.lock:
            groups = [
                copy.deepcopy(g)
                for gid, g in state.strategy_tag_groups.items()
                if state.strategy_group_creator.get(gid) == agent
                and (strategy_id is None or g["strategy_id"] == strategy_id)
            ]
        return ok(tag_group=tag_list_filter(groups, set(data.get("tag_id") or []), set(data.get("group_id") or [])))

    @app.post("/cgi-bin/externalcontact/add_strategy_tag")
    def add_strategy_tag() -> Response:
        """Tags into an existing group of this app (`group_id`) or a new group (`group_name`)
        of rule group `strategy_id` (required); answers the group with the new tags."""
        bad, info, data = authorised_body()
        if bad:
            return bad
        tags = data.get("tag")
        if not isinstance(tags, list) or not tags or not all(isinstance(t, dict) and t.get("name") for t in tags):
            return fail(40058, "tag must list tags with a name")
        agent = agent_of(info)
        with state.lock:
            if data.get("strategy_id") not in state.strategies:
                return fail(40058, "invalid strategy_id")
            group_id = data.get("group_id")
            if group_id:
                group = state.strategy_tag_groups.get(group_id)
                if group is None or group["strategy_id"] != data["strategy_id"]:
                    return fail(40068, "invalid group_id")
                if state.strategy_group_creator.get(group_id) != agent:
                    return fail(301002)  # an app edits only what it created
                new = state.add_strategy_tags(group_id, [t["name"] for t in tags])
            elif data.get("group_name"):
                group = state.add_strategy_tag_group(
                    data["strategy_id"], data["group_name"], [t["name"] for t in tags], created_by=agent
                )
                if "order" in data:
                    state.strategy_tag_groups[group["group_id"]]["order"] = int(data["order"])
                new = state.strategy_tag_groups[group["group_id"]]["tag"]
            else:
                return fail(40058, "group_id or group_name is required")
            for tag, asked in zip(new, tags, strict=True):
                if "order" in asked:
                    state.find_strategy_tag(tag["id"])[1]["order"] = int(asked["order"])  # type: ignore[index]
            shown = copy.deepcopy(state.strategy_tag_groups[group["group_id"]])
            ids = {t["id"] for t in new}
            shown["tag"] = [t for t in shown["tag"] if t["id"] in ids]
            shown.pop("strategy_id", None)
        return ok(tag_group=shown)

    @app.post("/cgi-bin/externalcontact/edit_strategy_tag")
    def edit_strategy_tag() -> Response:
        """A tag's or tag group's (`id`) `name` and/or `order`; not its rule group."""
        bad, info, data = authorised_body()
        if bad:
            return bad
        item_id = data.get("id")
        agent = agent_of(info)
        with state.lock:
            if item_id in state.strategy_tag_groups:
                item, group_id = state.strategy_tag_groups[item_id], item_id
                name_key = "group_name"
            else:
                found = state.find_strategy_tag(str(item_id or ""))
                if found is None:
                    return fail(40068)
                (group, item), name_key = found, "name"  # the sandbox's own dicts: edited in place
                group_id = group["group_id"]
            if state.strategy_group_creator.get(group_id) != agent:
                return fail(301002)
            if data.get("name"):
                item[name_key] = str(data["name"])
            if "order" in data:
                item["order"] = int(data["order"])
        return ok()

    @app.post("/cgi-bin/externalcontact/del_strategy_tag")
    def del_strategy_tag() -> Response:
        """Tags (`tag_id`) and/or whole tag groups (`group_id`) of this app."""
        bad, info, data = authorised_body()
        if bad:
            return bad
        ids = [*(data.get("tag_id") or []), *(data.get("group_id") or [])]
        if not ids:
            return fail(40058, "tag_id or group_id is required")
        agent = agent_of(info)
        with state.lock:
            for item_id in ids:
                found = state.find_strategy_tag(item_id)
                group_id = (
                    item_id if item_id in state.strategy_tag_groups else (found[0]["group_id"] if found else None)
                )
                if group_id is None:
                    return fail(40068)
                if state.strategy_group_creator.get(group_id) != agent:
                    return fail(301002)
            for item_id in ids:
                state.delete_strategy_tag(item_id)
        return ok()

    def attachment_error(msgtype: str, body: dict[str, Any]) -> Response | None:
        """WeCom checks each attachment's fields and media: an unknown, expired (three days) or
        mistyped media id is 40007, the whole message is refused."""
        if msgtype == "link":
            return None if body.get("title") and body.get("url") else fail(40058, "link needs title and url")
        if msgtype == "image" and body.get("pic_url") and not body.get("media_id"):
            return None
        if msgtype == "miniprogram":
            if not (body.get("title") and body.get("appid") and body.get("page")):
                return fail(40058, "miniprogram needs title, appid and page")
            media_id, media_type = body.get("pic_media_id"), "image"
        else:
            media_id, media_type = body.get("media_id"), msgtype
        if not media_id:
            return fail(40058, f"{msgtype} needs a media id")
        return None if state.media_valid(media_id, media_type) else fail(40007)

    @app.post("/cgi-bin/media/upload")
    def media_upload() -> Response:
        bad, _ = authorised()
        if bad:
            return bad
        media_type = request.args.get("type", "")
        if media_type not in MEDIA_LIMITS:
            return fail(40005, "invalid media type")
        upload = request.files.get("media")
        if upload is None:
            return fail(44001)
        content = upload.read()
        if not content:
            return fail(44001)
        if not 5 <= len(content) <= MEDIA_LIMITS[media_type]:
            return fail(40006)
        media_id, created_at = state.store_media(media_type, upload.filename or "", len(content))
        # created_at is a string in WeCom's answer.
        return ok(type=media_type, media_id=media_id, created_at=str(created_at))

    @app.post("/cgi-bin/externalcontact/send_welcome_msg")
    def send_welcome_msg() -> Response:
        bad, data = body_or_fail()
        if bad:
            return bad
        attachments = data.get("attachments") or []
        if not data.get("text") and not attachments:
            return fail(40058, "text or attachments is required")
        if len(attachments) > 9:
            return fail(40058, "at most 9 attachments")
        for item in attachments:
            if (
                not isinstance(item, dict)
                or item.get("msgtype") not in WELCOME_MSGTYPES
                or not isinstance(item.get(item.get("msgtype")), dict)
            ):
                return fail(40058, "invalid attachment")
            refused = attachment_error(item["msgtype"], item[item["msgtype"]])
            if refused:
                return refused
        status, payload = state.consume_welcome_code(data.get("welcome_code"))
        if status != "ok":
            return fail(41051)
        with state.lock:
            state.welcome_messages.append({**data, **(payload or {})})
        return ok()

    @app.post("/cgi-bin/externalcontact/get_user_behavior_data")
    def get_user_behavior_data() -> Response:
        bad, data = body_or_fail()
        if bad:
            return bad
        userids = data.get("userid") or []
        if not userids and not data.get("partyid"):
            return fail(40058, "userid or partyid is required")
        try:
            start = _china_midnight(int(data["start_time"]))
            end = _china_midnight(int(data["end_time"]))
        except (KeyError, TypeError, ValueError):
            return fail(40058, "start_time and end_time are required")
        if end < start or (end - start) // DAY + 1 > 30:
            return fail(40058, "the range must be 1..30 days")
        with state.lock:
            unknown = [u for u in userids if u not in state.members]
            if unknown:
                return fail(60111, f"invalid userid {unknown[0]}")
            rows = []
            for day in range(start, end + 1, DAY):
                totals = {
                    "stat_time": day,
                    "chat_cnt": 0,
                    "message_cnt": 0,
                    "negative_feedback_cnt": 0,
                    "new_apply_cnt": 0,
                    "new_contact_cnt": 0,
                }
                for userid in userids:
                    for key, value in state.behavior.get((userid, day), {}).items():
                        if key in ("reply_percentage", "avg_reply_time"):
                            totals[key] = value
                        else:
                            totals[key] = totals.get(key, 0) + value
                rows.append(totals)
        return ok(behavior_data=rows)

    # resigned/transfer_customer and resigned/transfer_result: integrations/sandbox/wecom_ops.py

    # --- customer group chats ---------------------------------------------------------
    @app.post("/cgi-bin/externalcontact/groupchat/get")
    def groupchat_get() -> Response:
        bad, data = body_or_fail()
        if bad:
            return bad
        chat_id = data.get("chat_id")
        if not isinstance(chat_id, str) or not chat_id:
            return fail(40058, "chat_id is required")
        with state.lock:
            chat = copy.deepcopy(state.group_chats.get(chat_id))
        if chat is None:
            return fail(40050, "chatid not found")
        if data.get("need_name") != 1:
            for member in chat["member_list"]:
                member.pop("name", None)
        return ok(group_chat=chat)

    # --- app messages ------------------------------------------------------------------
    @app.post("/cgi-bin/message/send")
    def message_send() -> Response:
        bad, info = authorised()
        if bad or info is None:
            return bad or fail(40014)
        data = json_body()
        if data is None:
            return fail(47001)
        if str(data.get("agentid")) != info.owner.split(":", 1)[1]:
            return fail(301002)
        msgtype = data.get("msgtype")
        if msgtype not in APP_MSGTYPES or not isinstance(data.get(msgtype), dict):
            return fail(40058, "invalid msgtype or content")
        touser = [u for u in str(data.get("touser") or "").split("|") if u]
        if not touser and not data.get("toparty") and not data.get("totag"):
            return fail(40058, "touser, toparty or totag is required")
        with state.lock:
            invalid = [u.lower() for u in touser if u != "@all" and u not in state.members]
            if touser and len(invalid) == len(touser) and not data.get("toparty") and not data.get("totag"):
                return fail(81013, "user & party & tag all invalid")
            if data.get("enable_duplicate_check") == 1:
                # The same request within the interval is taken (errcode 0) and not delivered.
                seen_key = json.dumps(
                    {k: v for k, v in data.items() if k not in ("enable_duplicate_check", "duplicate_check_interval")},
                    sort_keys=True,
                    ensure_ascii=False,
                )
                interval = min(int(data.get("duplicate_check_interval") or 1800), 4 * 3600)
                seen = state.app_message_seen.get(seen_key)
                if seen is not None and state.now() - seen < interval:
                    return ok(invaliduser="|".join(invalid), msgid=state.new_id("", 24), response_code="")
                state.app_message_seen[seen_key] = state.now()
            state.app_messages.append(dict(data))
        return ok(invaliduser="|".join(invalid), msgid=state.new_id("", 24), response_code="")

    # --- control endpoints -------------------------------------------------------------
    @app.post(CONTROL_PREFIX + "oauth-code")
    def control_oauth_code() -> Response:
        data = json_body() or {}
        try:
            code = state.issue_oauth_code(
                data.get("userid"), external_userid=data.get("external_userid"), openid=data.get("openid")
            )
        except ValueError as exc:
            return answer({"error": str(exc)}, status=400)
        return answer({"code": code})

    @app.post(CONTROL_PREFIX + "members")
    def control_add_member() -> Response:
        """A member of the corp's directory (as WeCom's admin console would add one)."""
        data = json_body() or {}
        if not isinstance(data.get("userid"), str) or not data["userid"]:
            return answer({"error": "userid is required"}, status=400)
        state.add_member(data["userid"], data.get("name"))
        return answer({"userid": data["userid"]})

    @app.post(CONTROL_PREFIX + "wecom-session")
    def control_wecom_session() -> Response:
        """Sign a directory member in to "WeCom" (`{"userid": null}` signs out): the authorize
        endpoint issues codes for them."""
        data = json_body() or {}
        try:
            state.sign_in_wecom(data.get("userid"))
        except ValueError as exc:
            return answer({"error": str(exc)}, status=400)
        return answer({"userid": state.wecom_signed_in})

    @app.post(CONTROL_PREFIX + "welcome-code")
    def control_welcome_code() -> Response:
        data = json_body() or {}
        if not data.get("userid") or not data.get("external_userid"):
            return answer({"error": "userid and external_userid are required"}, status=400)
        return answer({"code": state.issue_welcome_code(data["userid"], data["external_userid"])})

    from .wecom_ops import register_ops_routes  # directory, transfers, unassigned list

    register_ops_routes(app, state)
    return app
