"""Liveness and readiness for the platform: neither touches Marketo, neither needs a key."""
from flask import Blueprint, current_app, jsonify

from gateway.api.errors import not_migrated
from gateway.store.db import pending_migrations

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is alive and serving; a database outage is /readyz's to report, not a reason to restart."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Ready only when the database answers and its schema is at the head migration.

    A database that does not answer raises here, and is the `database_unavailable` 503 of every endpoint.
    """
    missing = pending_migrations(current_app.extensions["gate"].store.engine)
    if missing:
        raise not_migrated(missing)
    return jsonify(status="ok")
