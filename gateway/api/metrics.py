"""GET /metrics: Prometheus's text format, for an admin key or the metrics token, never for anyone else."""
from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app

from gateway.api.auth import bearer_key, request_caller
from gateway.api.errors import ApiError
from gateway.metrics import CONTENT_TYPE, exposition

bp = Blueprint("metrics", __name__)


def _allow_scrape() -> None:
    """The metrics token (GATEWAY_METRICS_TOKEN), so a scraper needs no admin key; or an admin key."""
    gate = current_app.extensions["gate"]
    key = bearer_key()
    if key is None:
        raise ApiError(401, "unauthorized", "Send the metrics token or an admin key as `Authorization: Bearer <key>`.",
                       headers={"WWW-Authenticate": "Bearer"})
    token = gate.config.metrics_token
    if token and hmac.compare_digest(token.encode(), key.encode()):
        return
    _, principal = request_caller()  # the rate limiter's lookup of this key, when it ran: not a second one
    if principal is None:
        raise ApiError(401, "unauthorized", "That key is not known to this gate.", headers={"WWW-Authenticate": "Bearer"})
    if principal.role != "admin":
        raise ApiError(403, "forbidden", "Metrics need the metrics token or an admin key.")


@bp.get("/metrics")
def metrics():
    _allow_scrape()
    return Response(exposition(current_app.extensions["gate"]), content_type=CONTENT_TYPE)
