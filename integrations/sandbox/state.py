"""In-memory state shared by the three sandbox apps.

Everything a test or the dev seed may want to arrange or inspect lives here, behind one lock:
credentials, issued codes/tokens/tickets, demo users, WeCom members/contacts/tags, payment
orders, the log of received requests and the fault switches. The clock is injectable
(`clock=` and `advance()`), so expiry is tested without sleeping.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from xml.sax.saxutils import escape

from . import crypto

CHINA_TZ = timezone(timedelta(hours=8))
SERVICES = ("wechat", "wecom", "wechatpay")
FAULT_MODES = ("down", "slow", "errcode")
# A WeCom member's state → the `status` that `user/list` and `user/get` answer for them: 1 active,
# 2 disabled (已禁用), 4 invited but not yet activated (未激活), 5 left the corp (退出企业).
# "resigned" is a member deleted from the directory (离职): no longer listed at all, their
# customers wait in the unassigned list for a resigned transfer.
MEMBER_LIST_STATUS = {"active": 1, "disabled": 2, "not_activated": 4, "exited": 5}
MEMBER_STATUSES = (*MEMBER_LIST_STATUS, "resigned")


def _check_member_status(status: str) -> None:
    # A typo would otherwise make a member silently vanish from `user/list`.
    if status not in MEMBER_STATUSES:
        raise ValueError(f"member status must be one of {MEMBER_STATUSES}, not {status!r}")


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, CHINA_TZ).isoformat(timespec="seconds")


@dataclass
class Fault:
    mode: str
    service: str | None = None
    path: str | None = None
    errcode: int | None = None
    seconds: float = 0.0
    count: int | None = None
    http_status: int | None = None
    code: str | None = None

    def matches(self, service: str, path: str) -> bool:
        if self.service and self.service != service:
            return False
        return not self.path or path.startswith(self.path)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "service": self.service,
            "path": self.path,
            "errcode": self.errcode,
            "seconds": self.seconds,
            "count": self.count,
        }


@dataclass
class IssuedToken:
    service: str
    owner: str  # appid, or "corpid:agentid"
    expires_at: float
    superseded: bool = False


@dataclass
class OneTimeCode:
    payload: dict[str, Any]
    expires_at: float
    used: bool = False


@dataclass
class Order:
    request: dict[str, Any]
    prepay_id: str
    created_at: float
    trade_state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: str | None = None
    bank_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class SandboxState:
    """Thread-safe state of the sandboxed WeChat, WeCom and WeChat Pay services."""

    CODE_TTL = 300
    TOKEN_TTL = 7200
    TOKEN_OVERLAP = 300
    WELCOME_CODE_TTL = 20
    PAY_CLOCK_SKEW = 300

    def __init__(
        self,
        credentials: dict[str, str],
        *,
        platform_private_key: str,
        clock: Callable[[], float] = time.time,
        seed: bool = True,
        trusted_hosts: Iterable[str] = (),
    ) -> None:
        self.credentials = dict(credentials)
        # The WeCom app's trusted domain (可信域名): the only hosts its OAuth2 authorize page
        # sends a member back to with a code. Configuration, like the credentials: kept by reset.
        self.wecom_trusted_hosts = frozenset(host.lower() for host in trusted_hosts)
        self.lock = threading.RLock()
        self.clock = clock
        self._seed = seed
        self._platform_key = crypto.load_private_key(platform_private_key)
        self._merchant_public_key = crypto.load_private_key(credentials["WECHATPAY_PRIVATE_KEY"]).public_key()
        self._wake = threading.Event()
        self._init_data()

    # ------------------------------------------------------------------ lifecycle / clock
    def _init_data(self) -> None:
        self.offset = 0.0
        self.log: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.tokens: dict[str, IssuedToken] = {}
        self.login_codes: dict[str, OneTimeCode] = {}
        self.phone_codes: dict[str, OneTimeCode] = {}
        self.oauth_codes: dict[str, OneTimeCode] = {}
        # The member signed in to the WeCom client that opens pages (the authorize endpoint's
        # user); nobody until a test or a developer says who (`sign_in_wecom`).
        self.wecom_signed_in: str | None = None
        self.welcome_codes: dict[str, OneTimeCode] = {}
        self.users: dict[str, dict[str, Any]] = {}  # mini-program openid -> {"unionid", "phone"}
        self.subscribe_grants: dict[tuple[str, str], int] = {}
        self.subscribe_messages: list[dict[str, Any]] = []
        self.tickets: dict[str, tuple[str, float]] = {}  # "corp" / "agent:<id>" -> (ticket, expires_at)
        self.forced_tickets: dict[str, str] = {}
        self.members: dict[str, dict[str, Any]] = {}
        self.external_contacts: dict[str, dict[str, Any]] = {}
        self.follows: dict[tuple[str, str], dict[str, Any]] = {}  # (userid, external_userid) -> follow
        self.tag_groups: dict[str, dict[str, Any]] = {}
        # Customer-contact rule groups (规则组): strategy_id -> {"strategy_id", "range": userids
        # or None (every member)}, their tag groups as get_strategy_tag_list shows them, and who
        # made each tag group: an agent id (through add_strategy_tag) or "console". WeCom lists
        # an app only the rule-group tags it created (doc 99544), and mark_tag takes a rule
        # group's tag only from the app that created it, for members in the group's range
        # (doc 92697).
        self.strategies: dict[int, dict[str, Any]] = {}
        self.strategy_tag_groups: dict[str, dict[str, Any]] = {}
        self.strategy_group_creator: dict[str, str] = {}
        self.contact_ways: dict[str, dict[str, Any]] = {}
        self.contact_way_created: dict[str, int] = {}  # config_id -> unix time (list_contact_way)
        self.welcome_messages: list[dict[str, Any]] = []
        self.media: dict[str, dict[str, Any]] = {}  # media_id -> {"type", "created_at", "filename", "size"}
        self.app_messages: list[dict[str, Any]] = []
        # message/send's duplicate check: the request's JSON -> when it was taken
        self.app_message_seen: dict[str, float] = {}
        self.behavior: dict[tuple[str, int], dict[str, Any]] = {}
        self.transfers: dict[tuple[str, str, str], dict[str, Any]] = {}
        from .wecom_ops import WeComOpsState  # directory, transfer outcomes (sandbox/wecom_ops.py)

        self.ops = WeComOpsState()
        self.group_chats: dict[str, dict[str, Any]] = {}  # chat_id -> groupchat/get's group_chat
        self.orders: dict[str, Order] = {}
        if self._seed:
            self.seed_demo()

    def reset(self) -> None:
        """Back to the initial state: wakes slow requests, drops faults, codes, tokens and data."""
        with self.lock:
            self._wake.set()
            self._wake = threading.Event()
            self._init_data()

    def now(self) -> float:
        return self.clock() + self.offset

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.offset += seconds

    def sleep(self, seconds: float) -> None:
        """Sleep for a slow fault; `reset()` cuts it short."""
        self._wake.wait(seconds)

    @staticmethod
    def new_id(prefix: str = "", nbytes: int = 12) -> str:
        return prefix + secrets.token_urlsafe(nbytes).replace("-", "x").replace("_", "y")

    # ------------------------------------------------------------------ request log
    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.log.append({**entry, "at": self.now()})

    def received(self, path_prefix: str | None = None, service: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                copy.deepcopy(e)
                for e in self.log
                if (path_prefix is None or e["path"].startswith(path_prefix))
                and (service is None or e["service"] == service)
            ]

    # ------------------------------------------------------------------ faults
    def set_fault(
        self,
        mode: str,
        *,
        errcode: int | None = None,
        seconds: float | None = None,
        path: str | None = None,
        count: int | None = None,
        service: str | None = None,
        http_status: int | None = None,
        code: str | None = None,
    ) -> dict[str, Any]:
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {FAULT_MODES}")
        if mode == "errcode" and errcode is None:
            raise ValueError("errcode mode needs an errcode")
        if service is not None and service not in SERVICES:
            raise ValueError(f"service must be one of {SERVICES}")
        fault = Fault(mode, service, path, errcode, float(seconds or 0), count, http_status, code)
        with self.lock:
            self.faults.append(fault)
        return fault.as_dict()

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()
            self._wake.set()
            self._wake = threading.Event()

    def take_fault(self, service: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(service, path):
                    if fault.count is not None:
                        fault.count -= 1
                        if fault.count <= 0:
                            self.faults.remove(fault)
                    return fault
        return None

    # ------------------------------------------------------------------ access tokens
    def issue_token(self, service: str, owner: str, *, reuse_valid: bool) -> tuple[str, int]:
        """WeChat: a new token each time, the previous one lives TOKEN_OVERLAP more seconds.
        WeCom: the same token while it is valid."""
        with self.lock:
            now = self.now()
            current = [
                (t, info)
                for t, info in self.tokens.items()
                if info.service == service and info.owner == owner and not info.superseded and info.expires_at > now
            ]
            if reuse_valid and current:
                token, info = current[0]
                return token, int(info.expires_at - now)
            for _, info in current:
                info.superseded = True
                info.expires_at = min(info.expires_at, now + self.TOKEN_OVERLAP)
            token = self.new_id("", 96)  # real tokens are long; the docs say store >= 512 chars
            self.tokens[token] = IssuedToken(service, owner, now + self.TOKEN_TTL)
            return token, self.TOKEN_TTL

    def check_token(self, service: str, token: str | None) -> tuple[int, IssuedToken | None]:
        """Returns (errcode, token info); errcode 0 when the token is usable."""
        if not token:
            return 41001, None
        with self.lock:
            info = self.tokens.get(token)
            if info is None or info.service != service:
                return (40001 if service == "wechat" else 40014), None
            if info.expires_at <= self.now():
                return (40001 if info.superseded else 42001), None
            return 0, info

    def expire_tokens(self, service: str | None = None) -> None:
        """Make every issued token expired (the next call with one answers 42001)."""
        with self.lock:
            now = self.now()
            for info in self.tokens.values():
                if service is None or info.service == service:
                    info.expires_at = min(info.expires_at, now)

    def revoke_tokens(self, service: str | None = None) -> None:
        """Forget every issued token (the next call with one answers 40001 / 40014)."""
        with self.lock:
            self.tokens = {t: i for t, i in self.tokens.items() if service is not None and i.service != service}

    # ------------------------------------------------------------------ one-time codes
    def _issue_code(self, pool: dict[str, OneTimeCode], payload: dict[str, Any], ttl: float) -> str:
        code = self.new_id("", 24)
        with self.lock:
            pool[code] = OneTimeCode(payload, self.now() + ttl)
        return code

    def _consume(self, pool: dict[str, OneTimeCode], code: str | None) -> tuple[str, dict[str, Any] | None]:
        """Returns ("ok" | "unknown" | "expired" | "used", payload)."""
        with self.lock:
            entry = pool.get(code or "")
            if entry is None:
                return "unknown", None
            if entry.used:
                return "used", None
            if entry.expires_at <= self.now():
                return "expired", None
            entry.used = True
            return "ok", dict(entry.payload)

    # ------------------------------------------------------------------ mini-program
    def add_user(self, openid: str, unionid: str | None = None, phone: str | None = None) -> None:
        with self.lock:
            user = self.users.setdefault(openid, {"unionid": None, "phone": None})
            if unionid is not None:
                user["unionid"] = unionid
            if phone is not None:
                user["phone"] = phone

    def issue_login_code(self, openid: str, unionid: str | None = None) -> str:
        """A wx.login() code for this user (registered as a user of the app if new)."""
        self.add_user(openid, unionid)
        return self._issue_code(self.login_codes, {"openid": openid}, self.CODE_TTL)

    def consume_login_code(self, code: str | None) -> tuple[str, dict[str, Any] | None]:
        status, payload = self._consume(self.login_codes, code)
        if status == "ok" and payload is not None:
            with self.lock:
                payload.update(self.users.get(payload["openid"], {}))
        return status, payload

    def issue_phone_code(self, phone: str, openid: str | None = None) -> str:
        return self._issue_code(self.phone_codes, {"phone": phone, "openid": openid}, self.CODE_TTL)

    def consume_phone_code(self, code: str | None) -> tuple[str, dict[str, Any] | None]:
        return self._consume(self.phone_codes, code)

    def set_subscribe_grants(self, openid: str, template_id: str, count: int) -> None:
        """How many more subscribe messages of this template the user has accepted."""
        self.add_user(openid)
        with self.lock:
            self.subscribe_grants[(openid, template_id)] = count

    def take_subscribe_grant(self, openid: str, template_id: str) -> bool:
        with self.lock:
            left = self.subscribe_grants.get((openid, template_id), 0)
            if left <= 0:
                return False
            self.subscribe_grants[(openid, template_id)] = left - 1
            return True

    # ------------------------------------------------------------------ WeCom directory
    def seed_demo(self) -> None:
        """A small corp: two advisors, one resigned advisor, two customers and a tag library."""
        self.add_member("advisor.zhang", "张顾问")
        self.add_member("advisor.li", "李顾问")
        self.add_member("advisor.wang", "王顾问", status="resigned")
        group = self.add_tag_group("意向车型", ["SUV", "轿车", "新能源"])
        self.add_tag_group("客户等级", ["A", "B", "C"])
        suv = group["tag"][0]["id"]
        self.add_external_contact(
            "wmDemoCustomer001",
            "陈先生",
            unionid="oDemoUnion001",
            follow_userid="advisor.zhang",
            state="store01",
            tags=[suv],
        )
        self.add_external_contact("wmDemoCustomer002", "刘女士", follow_userid="advisor.wang")

    def add_member(self, userid: str, name: str | None = None, *, status: str = "active") -> None:
        """A corp member; `status` is one of MEMBER_STATUSES."""
        _check_member_status(status)
        with self.lock:
            self.members[userid] = {"userid": userid, "name": name or userid, "status": status}

    def set_member_status(self, userid: str, status: str) -> None:
        _check_member_status(status)
        with self.lock:
            self.members[userid]["status"] = status

    def add_tag_group(self, group_name: str, tag_names: list[str]) -> dict[str, Any]:
        with self.lock:
            now = int(self.now())
            group_id = self.new_id("et", 12)
            group = {
                "group_id": group_id,
                "group_name": group_name,
                "create_time": now,
                "order": len(self.tag_groups) + 1,
                "deleted": False,
                "tag": [
                    {
                        "id": self.new_id("et", 12),
                        "name": n,
                        "create_time": now,
                        "order": i + 1,
                        "deleted": False,
                    }
                    for i, n in enumerate(tag_names)
                ],
            }
            self.tag_groups[group_id] = group
            return copy.deepcopy(group)

    def add_strategy(self, strategy_id: int, members: list[str] | None = None) -> None:
        """A rule group; `members`: the userids in its range (None: every member)."""
        with self.lock:
            self.strategies[int(strategy_id)] = {"strategy_id": int(strategy_id), "range": members}

    def add_strategy_tag_group(
        self, strategy_id: int, group_name: str, tag_names: list[str], *, created_by: str = "console"
    ) -> dict[str, Any]:
        """A tag group with its tags under rule group `strategy_id` (which must exist), made in
        the admin console (`created_by="console"`) or by the app with that agent id."""
        with self.lock:
            if int(strategy_id) not in self.strategies:
                raise KeyError(f"no rule group {strategy_id}")
            now = int(self.now())
            group_id = self.new_id("et", 12)
            group = {
                "group_id": group_id,
                "group_name": group_name,
                "create_time": now,
                "order": len(self.strategy_tag_groups) + 1,
                "strategy_id": int(strategy_id),
                "tag": [],
            }
            self.strategy_tag_groups[group_id] = group
            self.strategy_group_creator[group_id] = str(created_by)
            self.add_strategy_tags(group_id, tag_names)
            return copy.deepcopy(group)

    def add_strategy_tags(self, group_id: str, tag_names: list[str]) -> list[dict[str, Any]]:
        with self.lock:
            group = self.strategy_tag_groups[group_id]
            now = int(self.now())
            tags = [
                {"id": self.new_id("et", 12), "name": n, "create_time": now, "order": len(group["tag"]) + i + 1}
                for i, n in enumerate(tag_names)
            ]
            group["tag"].extend(tags)
            return copy.deepcopy(tags)

    def find_strategy_tag(self, tag_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        with self.lock:
            for group in self.strategy_tag_groups.values():
                for tag in group["tag"]:
                    if tag["id"] == tag_id:
                        return group, tag
        return None

    def delete_strategy_tag(self, item_id: str) -> None:
        """A rule-group tag, or a tag group with its tags, deleted (as in the admin console).
        Customers no longer carry it: externalcontact/get shows only tags that exist."""
        with self.lock:
            if self.strategy_tag_groups.pop(item_id, None) is not None:
                self.strategy_group_creator.pop(item_id, None)
                return
            for group in self.strategy_tag_groups.values():
                group["tag"] = [t for t in group["tag"] if t["id"] != item_id]

    def change_external_tag_xml(
        self, item_id: str, tag_type: str, change_type: str, create_time: int, *, strategy_id: int | None = None
    ) -> str:
        """Plaintext XML of a change_external_tag event (create | update | delete | shuffle) of a
        tag or tag group; `strategy_id` for a rule group's (StrategyId), else none is sent."""
        fields = {"Id": item_id, "TagType": tag_type, "ChangeType": change_type}
        if strategy_id is not None:
            fields["StrategyId"] = str(strategy_id)
        return self.wecom_event_xml(self.credentials["WECOM_CORP_ID"], "change_external_tag", create_time, **fields)

    def find_tag(self, tag_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        with self.lock:
            for group in self.tag_groups.values():
                for tag in group["tag"]:
                    if tag["id"] == tag_id:
                        return group, tag
        return None

    def add_external_contact(
        self,
        external_userid: str,
        name: str,
        *,
        type: int = 1,  # the upstream field name
        unionid: str | None = None,
        follow_userid: str | None = None,
        remark: str = "",
        state: str | None = None,
        add_way: int = 1,
        tags: list[str] | None = None,
    ) -> None:
        with self.lock:
            contact = {
                "external_userid": external_userid,
                "name": name,
                "type": type,
                "avatar": f"https://sandbox.invalid/avatar/{external_userid}.png",
                "gender": 0,
            }
            if unionid:
                contact["unionid"] = unionid
            self.external_contacts[external_userid] = contact
            if follow_userid:
                self.add_follow(follow_userid, external_userid, remark=remark, state=state, add_way=add_way, tags=tags)

    def add_follow(
        self,
        userid: str,
        external_userid: str,
        *,
        remark: str = "",
        state: str | None = None,
        add_way: int = 1,
        tags: list[str] | None = None,
    ) -> None:
        with self.lock:
            follow = {
                "userid": userid,
                "remark": remark,
                "description": "",
                "createtime": int(self.now()),
                "tag_ids": list(tags or []),
                "remark_corp_name": "",
                "remark_mobiles": [],
                "oper_userid": userid,
                "add_way": add_way,
            }
            if state:
                follow["state"] = state
            self.follows[(userid, external_userid)] = follow

    def follows_of_contact(self, external_userid: str) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(f) for (u, e), f in self.follows.items() if e == external_userid]

    def issue_oauth_code(
        self, userid: str | None = None, *, external_userid: str | None = None, openid: str | None = None
    ) -> str:
        """A WeCom OAuth code for a corp member (userid) or an outsider (openid/external_userid)."""
        if not userid and not openid:
            raise ValueError("give a member userid or an outsider openid")
        payload = {"userid": userid, "external_userid": external_userid, "openid": openid}
        return self._issue_code(self.oauth_codes, payload, self.CODE_TTL)

    def consume_oauth_code(self, code: str | None) -> tuple[str, dict[str, Any] | None]:
        return self._consume(self.oauth_codes, code)

    def sign_in_wecom(self, userid: str | None) -> None:
        """Who is signed in to WeCom on the "phone" that follows OAuth redirects: an active member
        of the directory (`add_member`), or None to sign out. Anyone else is refused, as WeCom
        would never authorise a stranger."""
        with self.lock:
            if userid is not None:
                member = self.members.get(userid)
                if member is None or member["status"] != "active":
                    raise ValueError(f"{userid!r} is not an active member of the sandbox's corp")
            self.wecom_signed_in = userid

    def authorize_member(self) -> str:
        """The signed-in member's OAuth code (authorize): the member must still be active."""
        with self.lock:
            userid = self.wecom_signed_in
            if userid is None:
                raise LookupError('nobody is signed in to WeCom: POST /_sandbox/wecom-session {"userid": ...}')
            member = self.members.get(userid)
            if member is None or member["status"] != "active":
                raise ValueError(f"{userid!r} is no longer an active member")
            return self.issue_oauth_code(userid)

    def issue_welcome_code(self, userid: str, external_userid: str) -> str:
        """The WelcomeCode an add_external_contact callback would carry (20 s, single use)."""
        payload = {"userid": userid, "external_userid": external_userid}
        return self._issue_code(self.welcome_codes, payload, self.WELCOME_CODE_TTL)

    def consume_welcome_code(self, code: str | None) -> tuple[str, dict[str, Any] | None]:
        return self._consume(self.welcome_codes, code)

    MEDIA_TTL = 3 * 86400  # a temporary media_id (media/upload) is valid for three days

    def store_media(self, media_type: str, filename: str, size: int) -> tuple[str, int]:
        """media/upload: a new temporary media id and its created_at."""
        with self.lock:
            media_id = f"3{secrets.token_urlsafe(30)}"
            created_at = int(self.now())
            self.media[media_id] = {"type": media_type, "created_at": created_at, "filename": filename, "size": size}
            return media_id, created_at

    def media_valid(self, media_id: Any, media_type: str) -> bool:
        """A media id WeCom still accepts: issued here, of this type, younger than three days."""
        with self.lock:
            item = self.media.get(media_id) if isinstance(media_id, str) else None
            return item is not None and item["type"] == media_type and self.now() - item["created_at"] < self.MEDIA_TTL

    def set_jsapi_ticket(self, ticket: str, *, agent: bool = False) -> None:
        """Force the ticket the sandbox issues (to check a signature against a known example)."""
        with self.lock:
            self.forced_tickets["agent" if agent else "corp"] = ticket
            self.tickets = {k: v for k, v in self.tickets.items() if not k.startswith("agent" if agent else "corp")}

    def issue_ticket(self, kind: str) -> tuple[str, int]:
        with self.lock:
            now = self.now()
            current = self.tickets.get(kind)
            if current and current[1] > now:
                return current[0], int(current[1] - now)
            forced = self.forced_tickets.get(kind.split(":")[0])
            ticket = forced or self.new_id("", 60)
            self.tickets[kind] = (ticket, now + self.TOKEN_TTL)
            return ticket, self.TOKEN_TTL

    def set_behavior(self, userid: str, stat_time: int, **figures: Any) -> None:
        """Behaviour figures of one advisor for the day starting at `stat_time` (China midnight)."""
        with self.lock:
            self.behavior[(userid, int(stat_time))] = dict(figures)

    def complete_transfers(self, status: int = 1) -> None:
        """Let the 24-hour handover wait pass: waiting transfers get `status` (1 done, 3 refused...)."""
        with self.lock:
            for (handover, takeover, ext), transfer in self.transfers.items():
                if transfer["status"] != 2:
                    continue
                transfer["status"] = status
                transfer["takeover_time"] = int(self.now())
                if status == 1:
                    follow = self.follows.pop((handover, ext), None)
                    if follow is not None:
                        follow["userid"] = takeover
                        self.follows[(takeover, ext)] = follow

    # ------------------------------------------------------------------ WeCom customer group chats
    def add_group_chat(
        self, chat_id: str, name: str, owner: str, *, create_time: int | None = None, members: list[str] | None = None
    ) -> None:
        """A customer group chat owned by a member; `members` are userids or external_userids."""
        with self.lock:
            now = int(self.now()) if create_time is None else create_time
            self.group_chats[chat_id] = {
                "chat_id": chat_id,
                "name": name,
                "owner": owner,
                "create_time": now,
                "notice": "",
                "member_list": [],
                "admin_list": [],
            }
            for userid in [owner, *(members or [])]:
                self.join_group_chat(chat_id, userid, join_time=now, invitor=owner)

    def join_group_chat(
        self, chat_id: str, userid: str, *, join_time: int | None = None, join_scene: int = 1, invitor: str = ""
    ) -> None:
        """A member (type 1) or an external contact (type 2, `wm...`/`wo...`) joins the chat."""
        with self.lock:
            chat = self.group_chats[chat_id]
            chat["member_list"] = [m for m in chat["member_list"] if m["userid"] != userid]
            unknown = userid not in self.members
            external = userid in self.external_contacts or (unknown and userid.startswith(("wm", "wo")))
            member: dict[str, Any] = {
                "userid": userid,
                "type": 2 if external else 1,
                "join_time": int(self.now()) if join_time is None else join_time,
                "join_scene": join_scene,
                "group_nickname": "",
                "name": (self.external_contacts.get(userid) or self.members.get(userid) or {}).get("name", userid),
            }
            if invitor:
                member["invitor"] = {"userid": invitor}
            if external and (self.external_contacts.get(userid) or {}).get("unionid"):
                member["unionid"] = self.external_contacts[userid]["unionid"]
            chat["member_list"].append(member)

    def leave_group_chat(self, chat_id: str, userid: str) -> None:
        with self.lock:
            chat = self.group_chats[chat_id]
            chat["member_list"] = [m for m in chat["member_list"] if m["userid"] != userid]

    def change_external_chat_xml(
        self, chat_id: str, change_type: str, create_time: int, *, update_detail: str = "", **extra: Any
    ) -> str:
        """Plaintext XML of a change_external_chat event (create | update | dismiss). For update:
        `update_detail` (add_member, del_member, change_owner, change_name, change_notice) and
        e.g. `members=[...]`, JoinScene, QuitScene, LastMemVer, CurMemVer."""
        members = list(extra.pop("members", []) or [])
        parts = [
            f"<ToUserName><![CDATA[{self.credentials['WECOM_CORP_ID']}]]></ToUserName>",
            "<FromUserName><![CDATA[sys]]></FromUserName>",
            f"<CreateTime>{create_time}</CreateTime>",
            "<MsgType><![CDATA[event]]></MsgType>",
            "<Event><![CDATA[change_external_chat]]></Event>",
            f"<ChatId><![CDATA[{escape(chat_id)}]]></ChatId>",
            f"<ChangeType><![CDATA[{escape(change_type)}]]></ChangeType>",
        ]
        if update_detail:
            parts.append(f"<UpdateDetail><![CDATA[{escape(update_detail)}]]></UpdateDetail>")
        parts += [f"<{k}>{escape(str(v))}</{k}>" for k, v in extra.items()]
        if members:
            parts.append(f"<MemChangeCnt>{len(members)}</MemChangeCnt>")
            items = "".join(f"<Item><![CDATA[{escape(m)}]]></Item>" for m in members)
            parts.append(f"<MemChangeList>{items}</MemChangeList>")
        return "<xml>" + "".join(parts) + "</xml>"

    # ------------------------------------------------------------------ WeCom callbacks
    def wecom_callback(
        self, xml_plaintext: str, *, timestamp: str | None = None, nonce: str | None = None
    ) -> tuple[dict[str, str], str]:
        """What WeCom would POST to our callback URL for this plaintext event XML:
        (query params msg_signature/timestamp/nonce, encrypted XML body)."""
        corp_id = self.credentials["WECOM_CORP_ID"]
        encrypted = crypto.wecom_encrypt(self.credentials["WECOM_CALLBACK_AES_KEY"], xml_plaintext, corp_id)
        timestamp = timestamp or str(int(self.now()))
        nonce = nonce or str(secrets.randbelow(10**10))
        signature = crypto.wecom_signature(self.credentials["WECOM_CALLBACK_TOKEN"], timestamp, nonce, encrypted)
        body = (
            f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName>"
            f"<AgentID><![CDATA[{self.credentials['WECOM_AGENT_ID']}]]></AgentID>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
        )
        return {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce}, body

    def wecom_verify_url_params(self, echostr_plaintext: str) -> dict[str, str]:
        """The GET query WeCom sends to verify a callback URL; the answer must be the plaintext."""
        corp_id = self.credentials["WECOM_CORP_ID"]
        echostr = crypto.wecom_encrypt(self.credentials["WECOM_CALLBACK_AES_KEY"], echostr_plaintext, corp_id)
        timestamp = str(int(self.now()))
        nonce = str(secrets.randbelow(10**10))
        signature = crypto.wecom_signature(self.credentials["WECOM_CALLBACK_TOKEN"], timestamp, nonce, echostr)
        return {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce, "echostr": echostr}

    def wecom_decrypt(self, encrypted: str) -> str:
        """Decrypt an `Encrypt` value (e.g. of a passive reply); checks the receive id."""
        message, receive_id = crypto.wecom_decrypt(self.credentials["WECOM_CALLBACK_AES_KEY"], encrypted)
        if receive_id != self.credentials["WECOM_CORP_ID"]:
            raise ValueError("receive id is not the corp id")
        return message

    @staticmethod
    def change_external_contact_xml(
        corp_id: str, change_type: str, userid: str, external_userid: str, create_time: int, **extra: str
    ) -> str:
        """Plaintext XML of a change_external_contact event (extra: State, WelcomeCode, Source...)."""
        parts = [
            f"<ToUserName><![CDATA[{corp_id}]]></ToUserName>",
            "<FromUserName><![CDATA[sys]]></FromUserName>",
            f"<CreateTime>{create_time}</CreateTime>",
            "<MsgType><![CDATA[event]]></MsgType>",
            "<Event><![CDATA[change_external_contact]]></Event>",
            f"<ChangeType><![CDATA[{change_type}]]></ChangeType>",
            f"<UserID><![CDATA[{escape(userid)}]]></UserID>",
            f"<ExternalUserID><![CDATA[{escape(external_userid)}]]></ExternalUserID>",
        ]
        parts += [f"<{k}><![CDATA[{escape(v)}]]></{k}>" for k, v in extra.items()]
        return "<xml>" + "".join(parts) + "</xml>"

    @staticmethod
    def wecom_event_xml(corp_id: str, event: str, create_time: int, **fields: str) -> str:
        """Plaintext XML of any WeCom event (change_external_tag: Id, TagType, ChangeType...)."""
        parts = [
            f"<ToUserName><![CDATA[{corp_id}]]></ToUserName>",
            "<FromUserName><![CDATA[sys]]></FromUserName>",
            f"<CreateTime>{create_time}</CreateTime>",
            "<MsgType><![CDATA[event]]></MsgType>",
            f"<Event><![CDATA[{escape(event)}]]></Event>",
        ]
        parts += [f"<{k}><![CDATA[{escape(v)}]]></{k}>" for k, v in fields.items()]
        return "<xml>" + "".join(parts) + "</xml>"

    def wecom_callback_for(
        self, xml_plaintext: str, *, receive_id: str, timestamp: str | None = None
    ) -> tuple[dict[str, str], str]:
        """Like `wecom_callback` but encrypted for another receive id (a callback meant for
        another corp, signed with our token): the receiver must refuse it."""
        encrypted = crypto.wecom_encrypt(self.credentials["WECOM_CALLBACK_AES_KEY"], xml_plaintext, receive_id)
        timestamp = timestamp or str(int(self.now()))
        nonce = str(secrets.randbelow(10**10))
        signature = crypto.wecom_signature(self.credentials["WECOM_CALLBACK_TOKEN"], timestamp, nonce, encrypted)
        body = (
            f"<xml><ToUserName><![CDATA[{self.credentials['WECOM_CORP_ID']}]]></ToUserName>"
            f"<AgentID><![CDATA[{self.credentials['WECOM_AGENT_ID']}]]></AgentID>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
        )
        return {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce}, body

    # ------------------------------------------------------------------ WeChat Pay
    @property
    def merchant_public_key(self):
        return self._merchant_public_key

    def sign_pay_message(self, timestamp: str, nonce: str, body: str) -> str:
        return crypto.rsa_sha256_sign(self._platform_key, f"{timestamp}\n{nonce}\n{body}\n")

    def pay_response_headers(self, body: str, *, timestamp: str | None = None) -> dict[str, str]:
        timestamp = timestamp or str(int(self.now()))
        nonce = secrets.token_hex(16).upper()
        return {
            "Wechatpay-Timestamp": timestamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": self.sign_pay_message(timestamp, nonce, body),
            "Wechatpay-Serial": self.credentials["WECHATPAY_PUBLIC_KEY_ID"],
            "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
            "Request-ID": str(uuid.uuid4()),
        }

    def build_pay_notification(
        self,
        plaintext: dict[str, Any],
        event_type: str = "TRANSACTION.SUCCESS",
        *,
        timestamp: int | str | None = None,
        summary: str | None = None,
    ) -> tuple[dict[str, str], str]:
        """(headers, body) of a WeChat Pay notification: resource AES-256-GCM encrypted with the
        APIv3 key, body signed with the platform key. `timestamp` (seconds) makes a stale one."""
        original_type = "refund" if event_type.startswith("REFUND.") else "transaction"
        nonce = self.new_id("", 9)[:12]
        ts = str(int(timestamp if timestamp is not None else self.now()))
        resource = {
            "original_type": original_type,
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": crypto.aes_gcm_encrypt(
                self.credentials["WECHATPAY_APIV3_KEY"],
                nonce,
                json.dumps(plaintext, ensure_ascii=False, separators=(",", ":")),
                original_type,
            ),
            "associated_data": original_type,
            "nonce": nonce,
        }
        envelope = {
            "id": "EV-" + uuid.uuid4().hex,
            "create_time": rfc3339(int(ts)),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary or ("支付成功" if event_type == "TRANSACTION.SUCCESS" else "通知"),
            "resource": resource,
        }
        body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
        headers = self.pay_response_headers(body, timestamp=ts)
        headers["Content-Type"] = "application/json"
        return headers, body

    def transaction_view(self, out_trade_no: str) -> dict[str, Any] | None:
        """The order as the query API / notification plaintext shows it."""
        with self.lock:
            order = self.orders.get(out_trade_no)
            if order is None:
                return None
            req = order.request
            view: dict[str, Any] = {
                "appid": req["appid"],
                "mchid": req["mchid"],
                "out_trade_no": out_trade_no,
                "trade_type": "JSAPI",
                "trade_state": order.trade_state,
                "trade_state_desc": {
                    "NOTPAY": "未支付",
                    "SUCCESS": "支付成功",
                    "CLOSED": "已关闭",
                    "REFUND": "转入退款",
                }.get(order.trade_state, order.trade_state),
                "attach": req.get("attach", ""),
                "payer": {"openid": req["payer"]["openid"]},
                "amount": {"total": req["amount"]["total"], "currency": req["amount"].get("currency", "CNY")},
            }
            if order.transaction_id:
                view["transaction_id"] = order.transaction_id
                view["bank_type"] = order.bank_type
                view["success_time"] = order.success_time
                view["amount"].update({"payer_total": req["amount"]["total"], "payer_currency": "CNY"})
            return view

    def mark_paid(self, out_trade_no: str, *, bank_type: str = "OTHERS") -> dict[str, Any]:
        """The payer paid: the order becomes SUCCESS. Returns the notification plaintext."""
        with self.lock:
            order = self.orders[out_trade_no]
            if order.trade_state != "NOTPAY":
                raise ValueError(f"order is {order.trade_state}")
            order.trade_state = "SUCCESS"
            order.transaction_id = (
                "42000"
                + datetime.fromtimestamp(self.now(), UTC).strftime("%Y%m%d")
                + ("".join(str(secrets.randbelow(10)) for _ in range(15)))
            )
            order.bank_type = bank_type
            order.success_time = rfc3339(self.now())
            view = self.transaction_view(out_trade_no)
            assert view is not None
            return view
