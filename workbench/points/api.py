"""Workbench API of the points feature (/api/workbench/v1/...)."""

from backend.platform.api import Blueprint

blp = Blueprint("wb_points", __name__, url_prefix="/api/workbench/v1", audience="staff", description="points")
