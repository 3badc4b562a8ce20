"""The simulated org's REST front door (the wire facts of docs/integrations.md) and its `/_sim/` control API."""
from __future__ import annotations

import uuid
from typing import Any

from flask import Flask, jsonify, request

from gateway.simulators.salesforce.soql import SoqlError, matcher, parse
from gateway.simulators.salesforce.state import FIELDS, PREFIXES, SalesforceSimState

MAX_RECORDS = 200
UNAVAILABLE = [{"errorCode": "SERVER_UNAVAILABLE", "message": "Salesforce is down for maintenance."}]
REQUEST_LIMIT = [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}]
EXPIRED = [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}]


def _error(status: int, code: str, message: str):
    return jsonify([{"errorCode": code, "message": message}]), status


def create_salesforce_app(state: SalesforceSimState) -> Flask:
    app = Flask(__name__)
    app.json.sort_keys = False

    def fault_answer():
        fault = state.take_fault()
        if fault == "down":
            state.count("rejected", 1)
            return jsonify(UNAVAILABLE), 503
        if fault == "request_limit":
            state.count("rejected", 1)
            return jsonify(REQUEST_LIMIT), 403
        if fault == "expire_session":
            state.expire_sessions()  # this call and every later one with an old token get INVALID_SESSION_ID
        return None

    def authenticated():
        header = request.headers.get("Authorization", "")
        token = header[len("Bearer "):] if header.startswith("Bearer ") else ""
        with state.lock:
            return token in state.tokens

    @app.before_request
    def front_door():
        if request.path.startswith("/_sim/"):
            return None
        answer = fault_answer()
        if answer is not None:
            return answer
        if request.path.startswith("/services/data/") and not authenticated():
            state.count("expired", 1)
            return jsonify(EXPIRED), 401
        return None

    @app.post("/services/oauth2/token")
    def token():
        state.count("token", 1)
        form = request.form
        if form.get("grant_type") != "client_credentials":
            return jsonify({"error": "unsupported_grant_type", "error_description": "grant type not supported"}), 400
        if state.clients.get(form.get("client_id", "")) != form.get("client_secret") or not form.get("client_secret"):
            return jsonify({"error": "invalid_client", "error_description": "invalid client credentials"}), 400
        base = request.host_url.rstrip("/")
        return jsonify({"access_token": state.issue_token(), "instance_url": base,
                        "id": f"{base}/id/00Dsim/005sim", "token_type": "Bearer",
                        "issued_at": "1764216000000", "signature": "c2ltdWxhdGVk"})

    @app.get("/services/data/<version>/query")
    @app.get("/services/data/<version>/query/")
    def query(version: str):
        state.count("query", 1)
        try:
            parsed = parse(request.args.get("q", ""))
        except (SoqlError, ValueError) as error:
            return _error(400, "MALFORMED_QUERY", str(error))
        if parsed.sobject not in PREFIXES:
            return _error(400, "INVALID_TYPE", f"sObject type '{parsed.sobject}' is not supported.")
        unknown = [f for f in parsed.fields if f not in FIELDS[parsed.sobject]]
        if unknown:
            return _error(400, "INVALID_FIELD", f"No such column '{unknown[0]}' on entity '{parsed.sobject}'.")
        with state.lock:
            selected = matcher(parsed.conditions)
            found = [r for r in state.records[parsed.sobject].values() if selected(r)]
            if parsed.order_by:
                found.sort(key=lambda r: str(r.get(parsed.order_by) or ""))
            if parsed.limit is not None:
                found = found[:parsed.limit]
            rows = [_row(parsed.sobject, r, parsed.fields, version) for r in found]
        return jsonify(_page(state, rows, version, len(rows)))

    @app.get("/services/data/<version>/query/<locator>")
    def query_more(version: str, locator: str):
        state.count("query_more", 1)
        cursor_id, _, _offset = locator.rpartition("-")
        with state.lock:
            rows = state.cursors.pop(cursor_id, None)
        if rows is None:
            return _error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return jsonify(_page(state, rows["rest"], version, rows["total"], offset=rows["offset"]))

    @app.route("/services/data/<version>/composite/sobjects", methods=["POST", "PATCH"])
    def composite(version: str):
        kind = "create" if request.method == "POST" else "update"
        state.count(kind, 1)
        body = request.get_json(silent=True)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            return _error(400, "JSON_PARSER_ERROR", "The request body must hold records.")
        if len(records) > MAX_RECORDS:
            return _error(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records "
                                                   "into this call")
        state.count(f"{kind}_records", len(records))
        with state.lock:
            results = [(_create if kind == "create" else _update)(state, record) for record in records]
        if kind == "create":
            state.hold()
        return jsonify(results)

    _control(app, state)
    return app


def _row(sobject: str, record: dict, fields: tuple[str, ...], version: str) -> dict:
    return {"attributes": {"type": sobject, "url": f"/services/data/{version}/sobjects/{sobject}/{record['Id']}"},
            **{f: record.get(f) for f in fields}}


def _page(state: SalesforceSimState, rows: list[dict], version: str, total: int, offset: int = 0) -> dict:
    page, rest = rows[:state.page_size], rows[state.page_size:]
    answer: dict[str, Any] = {"totalSize": total, "done": not rest, "records": page}
    if rest:
        cursor = "01gSIM" + uuid.uuid4().hex[:12]
        next_offset = offset + len(page)
        with state.lock:
            state.cursors[cursor] = {"rest": rest, "total": total, "offset": next_offset}
        answer["nextRecordsUrl"] = f"/services/data/{version}/query/{cursor}-{next_offset}"
    return answer


def _failure(code: str, message: str, fields: list[str] | None = None) -> dict:
    return {"success": False, "errors": [{"statusCode": code, "message": message, "fields": fields or []}]}


def _create(state: SalesforceSimState, record: Any) -> dict:
    sobject = (record.get("attributes") or {}).get("type") if isinstance(record, dict) else None
    if sobject not in PREFIXES:
        return _failure("INVALID_TYPE", f"sObject type '{sobject}' is not supported.")
    values = {k: v for k, v in record.items() if k != "attributes"}
    unknown = [f for f in values if f not in FIELDS[sobject] or f in ("Id", "CreatedDate")]
    if unknown:
        return _failure("INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type {sobject}", unknown[:1])
    for field in ("WhoId", "OwnerId"):
        if values.get(field) and state.find(values[field]) is None:
            return _failure("FIELD_INTEGRITY_EXCEPTION", f"{field}: id value of incorrect type: {values[field]}",
                            [field])
    rule = state.rejection_for(values)
    if rule is not None:
        return _failure(rule.get("statusCode", "FIELD_CUSTOM_VALIDATION_EXCEPTION"),
                        rule.get("message", "rejected"), [rule["field"]])
    return {"id": state.add(sobject, values), "success": True, "errors": []}


def _update(state: SalesforceSimState, record: Any) -> dict:
    record_id = record.get("Id") if isinstance(record, dict) else None
    found = state.find(record_id) if isinstance(record_id, str) else None
    if found is None:
        return _failure("MALFORMED_ID", f"bad id {record_id}", ["Id"])
    sobject, existing = found
    if sobject == "Lead" and existing.get("IsConverted"):
        return {**_failure("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead"), "id": existing["Id"]}
    values = {k: v for k, v in record.items() if k not in ("attributes", "Id")}
    unknown = [f for f in values if f not in FIELDS[sobject] or f == "CreatedDate"]
    if unknown:
        return _failure("INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type {sobject}", unknown[:1])
    existing.update(values)
    return {"id": existing["Id"], "success": True, "errors": []}


def _control(app: Flask, state: SalesforceSimState) -> None:
    def body() -> dict:
        data = request.get_json(silent=True)
        return data if isinstance(data, dict) else {}

    @app.post("/_sim/records")
    def add_records():
        ids: dict[str, list[str]] = {}
        try:
            for sobject, records in body().items():
                ids[sobject] = [state.add(sobject, dict(r)) for r in records]
        except (ValueError, TypeError, AttributeError) as error:
            return jsonify({"error": str(error)}), 400
        return jsonify({"ids": ids}), 201

    @app.get("/_sim/records/<sobject>")
    def list_records(sobject: str):
        if sobject not in PREFIXES:
            return jsonify({"error": f"unknown object type {sobject!r}"}), 404
        return jsonify({"records": state.list(sobject)})

    @app.get("/_sim/tasks")
    def list_tasks():
        return jsonify({"tasks": state.list("Task")})

    @app.post("/_sim/faults")
    def add_fault():
        data = body()
        if data.get("kind") not in ("down", "request_limit", "expire_session"):
            return jsonify({"error": "kind must be 'down', 'request_limit' or 'expire_session'"}), 400
        count, after = data.get("count"), data.get("after", 0)
        if count is not None and (not isinstance(count, int) or count < 1):
            return jsonify({"error": "count must be a positive integer or absent (until cleared)"}), 400
        if not isinstance(after, int) or after < 0:
            return jsonify({"error": "after must be a whole number of calls"}), 400
        with state.lock:
            state.faults.append({"kind": data["kind"], "count": count, "after": after})
        return jsonify({"faults": state.faults}), 201

    @app.delete("/_sim/faults")
    def clear_faults():
        with state.lock:
            state.faults.clear()
            state.rejections.clear()
        return jsonify({"faults": []})

    @app.post("/_sim/expire-sessions")
    def expire():
        state.expire_sessions()
        return jsonify({"expired": True})

    @app.post("/_sim/rejections")
    def add_rejection():
        data = body()
        if not isinstance(data.get("field"), str) or "value" not in data:
            return jsonify({"error": "body must be {\"field\", \"value\", \"statusCode\"?, \"message\"?}"}), 400
        with state.lock:
            state.rejections.append(data)
        return jsonify({"rejections": state.rejections}), 201

    @app.post("/_sim/hold-creates")
    def hold_creates():
        if body().get("on", True):
            state.start_holding()
        else:
            state.release_held()
        return jsonify({"holding": state.hold_creates.is_set()})

    @app.get("/_sim/calls")
    def calls():
        return jsonify(dict(state.calls))

    @app.post("/_sim/calls/reset")
    def reset_calls():
        state.calls.clear()
        return jsonify({})
