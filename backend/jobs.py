"""Imports the modules that register background jobs and periodic schedules."""

from backend.booking import jobs as _booking_jobs  # noqa: F401
from backend.campaigns import jobs as _campaign_jobs  # noqa: F401
from backend.consult import jobs as _consult_jobs  # noqa: F401
from backend.events import jobs as _event_jobs  # noqa: F401
from backend.leads import jobs as _lead_jobs  # noqa: F401
from backend.notices import jobs as _notice_jobs  # noqa: F401
from backend.offers import jobs as _offer_jobs  # noqa: F401
from backend.packages import jobs as _package_jobs  # noqa: F401
from backend.payments import jobs as _payment_jobs  # noqa: F401
from backend.platform import retention as _retention  # noqa: F401
from backend.points import jobs as _points_jobs  # noqa: F401
from backend.touchpoints import jobs as _touchpoint_jobs  # noqa: F401
from backend.wecom import jobs as _wecom_jobs  # noqa: F401
from backend.wecom import ops_jobs as _wecom_ops_jobs  # noqa: F401
from backend.wecom import retention as _wecom_retention  # noqa: F401
