"""Owner API of the payments feature (/api/app/v1/...)."""

from backend.platform.api import Blueprint

blp = Blueprint("owner_payments", __name__, url_prefix="/api/app/v1", audience="owner", description="payments")
