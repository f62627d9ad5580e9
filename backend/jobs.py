"""Imports the modules that register background jobs and periodic schedules."""

from backend.touchpoints import jobs as _touchpoint_jobs  # noqa: F401
