"""Owner API of the points feature (/api/app/v1/...)."""

from backend.platform.api import Blueprint

blp = Blueprint("owner_points", __name__, url_prefix="/api/app/v1", audience="owner", description="points")
