"""Imports every model module so that the metadata is complete (Alembic, tests, CLI)."""

from backend.booking import models as _booking  # noqa: F401
from backend.campaigns import models as _campaigns  # noqa: F401
from backend.consult import models as _consult  # noqa: F401
from backend.customers import models as _customers  # noqa: F401
from backend.events import models as _events  # noqa: F401
from backend.leads import models as _leads  # noqa: F401
from backend.notices import models as _notices  # noqa: F401
from backend.offers import models as _offers  # noqa: F401
from backend.org import models as _org  # noqa: F401
from backend.packages import models as _packages  # noqa: F401
from backend.payments import models as _payments  # noqa: F401
from backend.platform import audit as _audit  # noqa: F401
from backend.platform import idempotency as _idempotency  # noqa: F401
from backend.platform import jobs as _jobs  # noqa: F401
from backend.platform import tokens as _tokens  # noqa: F401
from backend.platform.db import Base
from backend.points import models as _points  # noqa: F401
from backend.segments import models as _segments  # noqa: F401
from backend.stores import models as _stores  # noqa: F401
from backend.touchpoints import models as _touchpoints  # noqa: F401
from backend.wecom import models as _wecom  # noqa: F401
from backend.wecom import ops_models as _wecom_ops  # noqa: F401

metadata = Base.metadata

# Every table is utf8mb4 on MariaDB whatever the database default (names, remarks, emoji).
for _table in metadata.tables.values():
    _table.kwargs.setdefault("mysql_charset", "utf8mb4")
    _table.kwargs.setdefault("mysql_collate", "utf8mb4_unicode_ci")
