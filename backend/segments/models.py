"""Segments (客户分群): saved filters over customers.

A segment belongs to an org unit (`owner_unit_id`: the group, a division, a region or a store)
and only ever selects customers whose home store is inside that unit's subtree (a group-owned
segment sees every customer). Its `filters` are a small, closed vocabulary (see
`backend/segments/service.py`); they are evaluated at use time, so a segment is always current.
Segments are archived, never deleted: campaigns, coupon pushes and events refer to them by id.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.platform.db import Base, TimestampMixin


class Segment(Base, TimestampMixin):
    __tablename__ = "segment"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(255), default=None)
    owner_unit_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"), index=True)
    # The WeCom corp whose tag library the tag filters name, and whose friend relations they
    # match (tag ids are a corp's own): the corp of whoever set the filters. None: saved before
    # segments had a corp and no creator to take it from (tags match in any corp, as then).
    corp_id: Mapped[str | None] = mapped_column(String(64), default=None)
    filters: Mapped[dict] = mapped_column(default=dict)
    archived: Mapped[bool] = mapped_column(default=False)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), default=None)
