"""WeCom `message/send` field limits (text content ≤ 2048 bytes; textcard title ≤ 128
bytes, description ≤ 512 bytes, url ≤ 2048 bytes, btntxt ≤ 4 chars) as actually put on the wire,
with Chinese text."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.platform.db import commit
from backend.wecom import notify
from backend.wecom.models import AppMessage

ADVISOR = "advisor.zhang"


@pytest.fixture
def corp(app: Any, sandbox_reset: Any) -> str:
    return app.config["WECOM_CORP_ID"]


def _sent(sb: Any) -> list[dict[str, Any]]:
    return list(sb.state.app_messages)


# --- defects found on review (fixed)


def test_long_text_on_the_wire_stays_within_2048_bytes(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any
) -> None:
    """A long weak-item summary in Chinese: the text put on the wire (after the reference number
    is appended) must fit WeCom's 2048-byte content limit, or WeCom cuts off the reference."""
    with app.app_context():
        (message,) = notify.weak_item(db_session, corp, "W-long", [ADVISOR], "话术需改进" * 300)
        commit(db_session)
    (body,) = _sent(sandbox_reset)
    content = body["text"]["content"]
    assert len(content.encode()) <= 2048, len(content.encode())
    assert content.endswith(f"编号 {message.id}")


def test_card_url_on_the_wire_stays_within_2048_bytes(app: Any, db_session: Any, corp: str, sandbox_reset: Any) -> None:
    """A card link just within what is accepted: the link sent, with `?msg=<id>` appended, is
    ≤ 2048 bytes (was 2054: the link was clipped by characters, then the reference added)."""
    url = "https://dealer.example.com/workbench/leads/1?q=" + "a" * (notify.URL_BYTES - 47)
    assert len(url.encode()) == notify.URL_BYTES
    with app.app_context():
        notify.notify(db_session, corp, "new_lead", "L-url", [ADVISOR], card=notify.Card("新线索", "描述", url))
        commit(db_session)
    (body,) = _sent(sandbox_reset)
    assert len(body["textcard"]["url"].encode()) <= 2048, len(body["textcard"]["url"].encode())
    assert body["textcard"]["url"].startswith(url)


def test_a_card_url_too_long_in_bytes_is_refused_not_cut(app: Any, db_session: Any, corp: str) -> None:
    """A link of Chinese text counted in bytes (was clipped by characters at ~3x WeCom's limit):
    a link cut short is a broken link, so the caller is told at once and nothing is recorded."""
    url = "https://dealer.example.com/workbench/leads/1?name=" + "陈" * 1000
    with app.app_context():
        with pytest.raises(ValueError):
            notify.notify(db_session, corp, "new_lead", "L-url-cn", [ADVISOR], card=notify.Card("新线索", "描述", url))
        assert db_session.scalars(select(AppMessage).where(AppMessage.kind == "new_lead")).all() == []


# --- held on review


def test_card_title_and_description_clipped_in_bytes_on_char_boundaries(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any
) -> None:
    name = "欧阳" * 200 + "😀"
    with app.app_context():
        (message,) = notify.new_consultation(db_session, corp, "C-long", ADVISOR, name, "保养多少钱？" * 50)
        notify.notify(
            db_session,
            corp,
            "weak_item",
            "W-title",
            [ADVISOR],
            card=notify.Card("标题" * 100 + "😀", "描述😀" * 200, "https://x.example.com/a", btntxt="查看详情信息"),
        )
        commit(db_session)
    bodies = _sent(sandbox_reset)
    assert len(bodies) == 2
    for body in bodies:
        card = body["textcard"]
        assert len(card["title"].encode()) <= 128
        assert len(card["description"].encode()) <= 512
        assert "\ufffd" not in card["title"] + card["description"]
        assert len(card["btntxt"]) <= 4
    assert bodies[0]["textcard"]["description"].startswith("客户「欧阳")
    assert db_session.scalars(select(AppMessage.status)).all() == ["sent", "sent"]


def test_long_customer_name_does_not_fail_lost_customer_text(
    app: Any, db_session: Any, corp: str, sandbox_reset: Any
) -> None:
    with app.app_context():
        notify.lost_customer(db_session, corp, "A-long", [ADVISOR], "刘" * 2000, "王顾问")
        commit(db_session)
    assert db_session.scalars(select(AppMessage.status)).all() == ["sent"]
    (body,) = _sent(sandbox_reset)
    assert body["text"]["content"].startswith("流失提醒：客户「刘")
