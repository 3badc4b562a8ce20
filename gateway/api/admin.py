"""Admin API: the global Marketo check switch, the failure policy, and the log of blocked sends."""
from __future__ import annotations

import csv
import io
from datetime import timedelta

from flask import Blueprint, Response, current_app, g, jsonify, stream_with_context

from gateway.api.auth import require
from gateway.api.errors import ApiError, load_query
from gateway.api.shared import json_body
from gateway.connection import check_marketo_connection
from gateway.marketo.interfaces import NOT_CONFIGURED
from gateway.marketo.quota import quota_day
from gateway.mirror import is_mirror_fresh
from gateway.salesforce.status import salesforce_status
from gateway.store import Settings, utcnow
from schemas.admin import (
    BlockedSendSchema,
    BlockedSendsPageSchema,
    BlockedSendsQuerySchema,
    SettingsPatchSchema,
    SettingsSchema,
    StatusSchema,
    encode_cursor,
)

bp = Blueprint("admin", __name__, url_prefix="/v1/admin")

STATUS_MAX_AGE = timedelta(minutes=5)  # how stale a shown connection status may be before it is tested again
DEFAULT_PAGE = 50
CSV_COLUMNS = ("at", "check_id", "source", "workflow", "sender", "recipient", "reason_code", "message_id")

settings_schema = SettingsSchema()
patch_schema = SettingsPatchSchema()
query_schema = BlockedSendsQuerySchema()
blocked_send_schema = BlockedSendSchema()
page_schema = BlockedSendsPageSchema()
status_schema = StatusSchema()


def _gate():
    return current_app.extensions["gate"]


def check_connection() -> tuple[bool, str]:
    gate = _gate()
    return check_marketo_connection(gate.marketo, gate.store, timeout=gate.config.check_timeout)


def settings_answer(settings: Settings) -> dict:
    gate = _gate()
    configured = gate.config.marketo_configured
    return settings_schema.dump(
        {
            "marketo_check_enabled": settings.marketo_check_enabled,
            "failure_mode": gate.checks.failure_mode(settings),
            "marketo": {
                "configured": configured,
                "connected": settings.marketo_connected,
                "message": settings.marketo_message or ("Not tested yet." if configured else NOT_CONFIGURED),
                "checked_at": settings.marketo_checked_at,
            },
            "updated_at": settings.updated_at,
            "updated_by": settings.updated_by,
        }
    )


@bp.get("/settings")
@require("admin")
def get_settings():
    settings = _gate().store.settings.get()
    if settings.marketo_checked_at is None or utcnow() - settings.marketo_checked_at > STATUS_MAX_AGE:
        check_connection()
        settings = _gate().store.settings.get()
    return jsonify(settings_answer(settings))


@bp.patch("/settings")
@require("admin")
def patch_settings():
    changes = patch_schema.load(json_body())
    if changes.get("marketo_check_enabled"):
        connected, message = check_connection()
        if not connected:
            raise ApiError(409, "marketo_not_connected", f"The check stays off: {message}")
    settings = _gate().store.settings.update(changes, updated_by=g.principal.name)
    _gate().checks.forget_context()
    return jsonify(settings_answer(settings))


@bp.get("/status")
@require("admin")
def status():
    """Marketo calls today against the budget, and how fresh the mirror is."""
    gate = _gate()
    now = utcnow()
    counts = gate.store.calls.counts(quota_day(now))
    sync = gate.store.sync.status()
    fresh = is_mirror_fresh(sync, gate.config.mirror_max_age, now)
    lag = (now - sync.last_success_at).total_seconds() if sync.last_success_at else None
    return jsonify(
        status_schema.dump(
            {
                "marketo_calls_today": counts,
                "budget": {
                    "daily": gate.budget.daily_limit,
                    "sync_limit": gate.budget.sync_limit,
                    "remaining": max(gate.budget.daily_limit - counts.used, 0),
                    "exhausted": counts.used >= gate.budget.daily_limit,
                },
                "quota_exhausted_until": gate.marketo.quota_exhausted_until,
                "mirror": {
                    "mode": "mirror" if fresh else "live",
                    "fresh": fresh,
                    "size": gate.store.mirror.size(),
                    "load_status": sync.load_status,
                    "load_window_start": sync.load_window_start,
                    "last_sync_at": sync.last_success_at,
                    "lag_seconds": lag,
                    "max_age_seconds": gate.config.mirror_max_age,
                    "last_error": sync.last_error,
                },
                "salesforce": salesforce_status(gate),
            }
        )
    )


@bp.get("/blocked-sends")
@require("admin")
def blocked_sends():
    query = load_query(query_schema)
    store = _gate().store
    if query["format"] == "csv":
        return _csv_answer(store, query)
    limit = query.get("limit", DEFAULT_PAGE)
    rows = store.blocked_sends.page(limit=limit + 1, before_id=query.get("cursor"))
    page, more = rows[:limit], len(rows) > limit
    return jsonify(
        page_schema.dump(
            {"items": page, "next_cursor": encode_cursor(page[-1].id) if more else None}
        )
    )


def _csv_cell(value) -> str:
    """Callers choose message ids and addresses; a spreadsheet must not run them as formulas."""
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_answer(store, query) -> Response:
    """Without `limit`, every row from the cursor on: an export; with it, one page and `X-Next-Cursor`."""
    headers = {"Content-Disposition": "attachment; filename=blocked-sends.csv"}
    if "limit" in query:
        rows = store.blocked_sends.page(limit=query["limit"] + 1, before_id=query.get("cursor"))
        if len(rows) > query["limit"]:
            rows = rows[: query["limit"]]
            headers["X-Next-Cursor"] = encode_cursor(rows[-1].id)
    else:
        rows = store.blocked_sends.iterate(before_id=query.get("cursor"))

    def lines():
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_cell(v) for k, v in blocked_send_schema.dump(row).items()})
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return Response(stream_with_context(lines()), mimetype="text/csv", headers=headers)
