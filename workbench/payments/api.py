"""Workbench API of the payments feature (/api/workbench/v1/...)."""

from backend.platform.api import Blueprint

blp = Blueprint("wb_payments", __name__, url_prefix="/api/workbench/v1", audience="staff", description="payments")
