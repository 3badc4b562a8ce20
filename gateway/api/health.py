"""Liveness for the platform's router: answers without touching Marketo."""
from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    with current_app.extensions["gate"].store.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return jsonify(status="ok")
