"""Admin API: the global Marketo check switch, the failure policy, and the log of blocked sends."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify, stream_with_context

from gateway.api.auth import require
from gateway.api.errors import ApiError, load_query
from gateway.api.shared import json_body
from gateway.marketo.interfaces import NOT_CONFIGURED
from gateway.marketo.quota import quota_day
from gateway.mirror import is_mirror_fresh
from gateway.mirror_load import load_progress
from gateway.reports import blocked_sends_csv
from gateway.settings_changes import VIA_API, CheckStaysOff, change_settings, current_settings
from gateway.store import BlockedSendFilter, Settings, utcnow
from gateway.salesforce.status import salesforce_status
from schemas.admin import (
    BlockedSendsPageSchema,
    BlockedSendsQuerySchema,
    SettingsPatchSchema,
    SettingsSchema,
    StatusSchema,
    encode_cursor,
)

bp = Blueprint("admin", __name__, url_prefix="/v1/admin")

DEFAULT_PAGE = 50

settings_schema = SettingsSchema()
patch_schema = SettingsPatchSchema()
query_schema = BlockedSendsQuerySchema()
page_schema = BlockedSendsPageSchema()
status_schema = StatusSchema()


def _gate():
    return current_app.extensions["gate"]


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
    return jsonify(settings_answer(current_settings(_gate())))


@bp.patch("/settings")
@require("admin")
def patch_settings():
    changes = patch_schema.load(json_body())
    try:
        settings = change_settings(_gate(), changes, actor=g.principal.name, via=VIA_API)
    except CheckStaysOff as refused:
        raise ApiError(409, "marketo_not_connected", f"The check stays off: {refused.message}") from None
    return jsonify(settings_answer(settings))


@bp.get("/status")
@require("admin")
def status():
    return jsonify(gate_status())


def gate_status() -> dict:
    """Marketo calls today against the budget, and how fresh the mirror is: the admin API's and the console's."""
    gate = _gate()
    now = utcnow()
    counts = gate.store.calls.counts(quota_day(now))
    sync = gate.store.sync.status()
    fresh = is_mirror_fresh(sync, gate.config.mirror_max_age, now)
    lag = (now - sync.last_success_at).total_seconds() if sync.last_success_at else None
    return status_schema.dump(
            {
                "enabled": gate.store.settings.get().marketo_check_enabled,
                "marketo_calls_today": counts,
                "budget": {
                    "daily": gate.budget.daily_limit,
                    "sync_limit": gate.budget.sync_limit,
                    "lookup_limit": gate.budget.lookup_limit,
                    "remaining": max(gate.budget.daily_limit - counts.used, 0),
                    "exhausted": counts.lookup >= gate.budget.lookup_limit,  # live lookups are refused
                },
                "quota_exhausted_until": gate.marketo.quota_exhausted_until,
                "marketo_circuit": gate.store.circuit.state(),
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
                    "load_progress": load_progress(sync, now),
                },
                "salesforce": salesforce_status(gate),
            }
        )


@bp.get("/blocked-sends")
@require("admin")
def blocked_sends():
    query = load_query(query_schema)
    store = _gate().store
    where = blocked_send_filter(query)
    if query["format"] == "csv":
        return _csv_answer(store, query, where)
    limit = query.get("limit", DEFAULT_PAGE)
    rows = store.blocked_sends.page(limit=limit + 1, before_id=query.get("cursor"), where=where)
    page, more = rows[:limit], len(rows) > limit
    return jsonify(
        page_schema.dump(
            {"items": page, "next_cursor": encode_cursor(page[-1].id) if more else None}
        )
    )


FILTERS = ("recipient", "sender", "source", "workflow", "since", "until")


def blocked_send_filter(query: dict) -> BlockedSendFilter:
    return BlockedSendFilter(**{name: query.get(name) for name in FILTERS})


def _csv_answer(store, query, where: BlockedSendFilter) -> Response:
    """Without `limit`, every row from the cursor on: an export; with it, one page and `X-Next-Cursor`."""
    headers = {"Content-Disposition": "attachment; filename=blocked-sends.csv"}
    if "limit" in query:
        rows = store.blocked_sends.page(limit=query["limit"] + 1, before_id=query.get("cursor"), where=where)
        if len(rows) > query["limit"]:
            rows = rows[: query["limit"]]
            headers["X-Next-Cursor"] = encode_cursor(rows[-1].id)
    else:
        rows = store.blocked_sends.iterate(before_id=query.get("cursor"), where=where)
    return Response(stream_with_context(blocked_sends_csv(rows)), mimetype="text/csv", headers=headers)
