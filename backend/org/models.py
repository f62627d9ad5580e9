from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backend.platform.db import Base, StrEnumType, TimestampMixin


class OrgKind(enum.StrEnum):
    GROUP = "group"
    DIVISION = "division"
    REGION = "region"
    STORE = "store"


# A child's kind must be exactly the next level down.
PARENT_KIND = {
    OrgKind.GROUP: None,
    OrgKind.DIVISION: OrgKind.GROUP,
    OrgKind.REGION: OrgKind.DIVISION,
    OrgKind.STORE: OrgKind.REGION,
}


class Role(enum.StrEnum):
    SALES_ADVISOR = "sales_advisor"
    SERVICE_ADVISOR = "service_advisor"
    INSURANCE_FINANCE = "insurance_finance"
    STORE_MANAGER = "store_manager"
    REGION_MANAGER = "region_manager"
    DIVISION_MANAGER = "division_manager"
    GROUP_ADMIN = "group_admin"
    MARKETING = "marketing"


ADVISOR_ROLES = frozenset({Role.SALES_ADVISOR, Role.SERVICE_ADVISOR, Role.INSURANCE_FINANCE})
MANAGER_ROLES = frozenset({Role.STORE_MANAGER, Role.REGION_MANAGER, Role.DIVISION_MANAGER, Role.GROUP_ADMIN})


class StaffStatus(enum.StrEnum):
    ACTIVE = "active"
    RESIGNED = "resigned"


class OrgUnit(Base, TimestampMixin):
    """A node of the org tree. `path` is the materialised chain of ids ("/1/4/9/") so that a
    subtree is one indexed prefix match."""

    __tablename__ = "org_unit"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[OrgKind] = mapped_column(StrEnumType(OrgKind, 16))
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"))
    path: Mapped[str] = mapped_column(String(255), index=True)

    parent: Mapped[OrgUnit | None] = relationship(remote_side=[id])


class Staff(Base, TimestampMixin):
    __tablename__ = "staff"
    __table_args__ = (UniqueConstraint("corp_id", "wecom_userid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    corp_id: Mapped[str] = mapped_column(String(64), default="default")
    wecom_userid: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    # The node the staff member works at: a store for advisors and store managers, the region /
    # division / group node for the managers above and for marketing.
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"), index=True)
    status: Mapped[StaffStatus] = mapped_column(StrEnumType(StaffStatus, 16), default=StaffStatus.ACTIVE)
    resigned_at: Mapped[datetime | None] = mapped_column(default=None)

    org_unit: Mapped[OrgUnit] = relationship(lazy="joined")
    role_rows: Mapped[list[StaffRole]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", back_populates="staff"
    )

    @property
    def roles(self) -> set[Role]:
        return {r.role for r in self.role_rows}


class StaffRole(Base):
    __tablename__ = "staff_role"

    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[Role] = mapped_column(StrEnumType(Role, 32), primary_key=True)

    staff: Mapped[Staff] = relationship(back_populates="role_rows")
