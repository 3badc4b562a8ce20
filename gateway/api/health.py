"""Liveness and readiness for the platform: neither touches Marketo, neither needs a key."""
import logging

from flask import Blueprint, current_app, jsonify
from sqlalchemy.exc import SQLAlchemyError

from gateway.store.db import pending_migrations

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is alive and serving; a database outage is /readyz's to report, not a reason to restart."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Ready only when the database answers and its schema is at the head migration."""
    try:
        missing = pending_migrations(current_app.extensions["gate"].store.engine)
    except SQLAlchemyError as error:
        log.warning("readiness: database error %s", type(error).__name__)
        missing = "the database does not answer"
    if missing:
        return jsonify(status="unavailable", missing=missing), 503, {"Retry-After": "5"}
    return jsonify(status="ok")
