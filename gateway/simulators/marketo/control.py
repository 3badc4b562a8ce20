"""The control API under ``/_sim/``: seed leads, change them, inject faults, read the counters.
It lets tests and benchmarks drive a simulator running in another process."""
from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, request

from gateway.simulators.marketo.http import current_state


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def _bad_request(message: str) -> tuple[Response, int]:
    return jsonify({"error": message}), 400


def _sim_add_leads() -> Any:
    try:
        leads = _json_body().get("leads")
        if not isinstance(leads, list):
            raise ValueError("body must be {\"leads\": [...]}")
        ids = current_state().add_leads(leads)
    except ValueError as err:
        return _bad_request(str(err))
    return jsonify({"ids": ids}), 201


def _sim_list_leads() -> Any:
    return jsonify({"leads": current_state().leads(request.args.get("email"))})


def _sim_set_unsubscribed(unsubscribed: bool) -> Any:
    try:
        body = _json_body()
        email, reason = body.get("email"), body.get("reason")
        if not isinstance(email, str) or not email.strip():
            raise ValueError("body must be {\"email\": ...}")
        if reason is not None and not isinstance(reason, str):
            raise ValueError("reason must be a string")
    except ValueError as err:
        return _bad_request(str(err))
    state = current_state()
    change = state.unsubscribe if unsubscribed else state.resubscribe
    changed = change(email) if reason is None else change(email, reason=reason)
    return jsonify({"email": email, "changed": changed, "matched": len(state.leads(email))})


def _sim_change_email() -> Any:
    try:
        body = _json_body()
        lead_id, email = body.get("leadId"), body.get("email")
        if isinstance(lead_id, bool) or not isinstance(lead_id, int):
            raise ValueError("body must be {\"leadId\": <int>, \"email\": ...}")
        changed = current_state().change_email(lead_id, email)
    except ValueError as err:
        return _bad_request(str(err))
    return jsonify({"leadId": lead_id, "email": email, "changed": changed})


def _sim_add_list() -> Any:
    """{"kind": "smartList", "name": ..., "rule": {"unsubscribed": true}} or
    {"kind": "staticList", "name": ..., "leadIds": [...]}: a list the export filters and the asset API know."""
    try:
        body = _json_body()
        kind, name = body.get("kind"), body.get("name")
        if kind not in ("smartList", "staticList") or not isinstance(name, str) or not name.strip():
            raise ValueError("body must be {\"kind\": \"smartList\" or \"staticList\", \"name\": ...}")
        if kind == "smartList":
            rule = body.get("rule")
            if not isinstance(rule, dict) or not rule:
                raise ValueError("a smart list needs a rule: {field: value}")
            list_id = current_state().add_smart_list(name, rule)
        else:
            lead_ids = body.get("leadIds", [])
            if not isinstance(lead_ids, list) or not all(isinstance(i, int) and not isinstance(i, bool)
                                                         for i in lead_ids):
                raise ValueError("leadIds must be a list of lead ids")
            list_id = current_state().add_static_list(name, lead_ids)
    except ValueError as err:
        return _bad_request(str(err))
    return jsonify({"id": list_id}), 201


def _sim_list_activities() -> Any:
    lead_id = request.args.get("leadId")
    if lead_id is not None and not lead_id.isdigit():
        return _bad_request("leadId must be an integer")
    return jsonify({"activities": current_state().activities(None if lead_id is None else int(lead_id))})


def _sim_list_exports() -> Any:
    return jsonify({"exports": current_state().exports()})


def _sim_fail_next_export() -> Any:
    try:
        count = _json_body().get("count", 1)
        current_state().fail_next_export(count)
    except ValueError as err:
        return _bad_request(str(err))
    return jsonify({"failNext": count}), 201


def _sim_inject_fault() -> Any:
    try:
        body = _json_body()
        allowed = {"code", "http_status", "latency", "count", "paths"}
        unknown = set(body) - allowed
        if unknown:
            raise ValueError(f"unknown fault arguments: {sorted(unknown)}")
        code = body.get("code")
        current_state().inject_fault(
            None if code is None else str(code),
            http_status=body.get("http_status"),
            latency=body.get("latency", 0.0),
            count=body.get("count"),
            paths=body.get("paths", "rest"),
        )
    except ValueError as err:
        return _bad_request(str(err))
    return jsonify({"faults": current_state().faults()}), 201


def _sim_list_faults() -> Any:
    return jsonify({"faults": current_state().faults()})


def _sim_clear_faults() -> Any:
    current_state().clear_faults()
    return jsonify({"faults": []})


def _sim_expire_tokens() -> Any:
    return jsonify({"expired": current_state().expire_tokens()})


def _sim_stats() -> Any:
    return jsonify(current_state().stats())


def _sim_reset() -> Any:
    current_state().reset()
    return jsonify({"reset": True})


def register_control_api(app: Flask) -> None:
    """Serve the control API under ``/_sim/`` on ``app``."""
    app.add_url_rule("/_sim/leads", "sim_add_leads", _sim_add_leads, methods=["POST"])
    app.add_url_rule("/_sim/leads", "sim_list_leads", _sim_list_leads, methods=["GET"])
    app.add_url_rule(
        "/_sim/unsubscribe", "sim_unsubscribe", lambda: _sim_set_unsubscribed(True), methods=["POST"]
    )
    app.add_url_rule(
        "/_sim/resubscribe", "sim_resubscribe", lambda: _sim_set_unsubscribed(False), methods=["POST"]
    )
    app.add_url_rule("/_sim/change-email", "sim_change_email", _sim_change_email, methods=["POST"])
    app.add_url_rule("/_sim/activities", "sim_list_activities", _sim_list_activities, methods=["GET"])
    app.add_url_rule("/_sim/exports", "sim_list_exports", _sim_list_exports, methods=["GET"])
    app.add_url_rule("/_sim/lists", "sim_add_list", _sim_add_list, methods=["POST"])
    app.add_url_rule(
        "/_sim/fail-next-export", "sim_fail_next_export", _sim_fail_next_export, methods=["POST"]
    )
    app.add_url_rule("/_sim/faults", "sim_inject_fault", _sim_inject_fault, methods=["POST"])
    app.add_url_rule("/_sim/faults", "sim_list_faults", _sim_list_faults, methods=["GET"])
    app.add_url_rule("/_sim/faults", "sim_clear_faults", _sim_clear_faults, methods=["DELETE"])
    app.add_url_rule("/_sim/expire-tokens", "sim_expire_tokens", _sim_expire_tokens, methods=["POST"])
    app.add_url_rule("/_sim/stats", "sim_stats", _sim_stats, methods=["GET"])
    app.add_url_rule("/_sim/reset", "sim_reset", _sim_reset, methods=["POST"])
