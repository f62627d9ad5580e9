"""Workbench API of the wecom feature (/api/workbench/v1/...)."""

from backend.platform.api import Blueprint

blp = Blueprint("wb_wecom", __name__, url_prefix="/api/workbench/v1", audience="staff", description="wecom")
