"""Welcome templates: an image attachment has exactly one non-blank source, a material_id or a
pic_url, so that WeCom never receives a welcome it refuses as a whole."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.wecom.models import WelcomeTemplate

TEMPLATES = "/api/workbench/v1/wecom/welcome-templates"


@pytest.fixture
def world(sandbox_reset: Any, tree: Any, make_staff: Any, staff_headers: Any) -> dict[str, Any]:
    manager = make_staff(tree.stores[0], "store_manager", userid="mgr0")
    return {"tree": tree, "h": staff_headers(manager)}


@pytest.mark.parametrize("image", [{"pic_url": ""}, {"material_id": ""}])
def test_an_image_attachment_with_only_a_blank_field_is_refused(
    client: Any, db_session: Any, world: Any, image: dict
) -> None:
    """A blank optional field counts as absent, as WeCom takes it: an image whose only field is
    blank has no source at all. Sent as is, WeCom would refuse the whole welcome (40058), its text
    included, so the template is refused with a 422 and not stored."""
    body = {
        "name": "欢迎",
        "store_id": world["tree"].stores[0].id,
        "text": "您好",
        "attachments": [{"msgtype": "image", "image": image}],
    }
    resp = client.post(TEMPLATES, headers=world["h"], json=body)
    assert resp.status_code == 422, (resp.status_code, resp.get_json())
    assert db_session.scalars(select(WelcomeTemplate)).all() == []
