"""The three pre-send callouts. Each caller's schema turns its shape into one CheckRequest; one path decides."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from flask import Blueprint, current_app, jsonify, request
from marshmallow import Schema

from gateway.api.auth import authorize_source, require
from gateway.api.deadline import request_started
from gateway.api.errors import ApiError
from gateway.api.shared import json_body
from gateway.checks import CheckOutcome, live_deadline
from gateway.decisions import CheckRequest
from gateway.domain import Source
from gateway.salesforce.recipients import resolve_record_ids
from schemas.checks import CheckRequestSchema
from schemas.common import dump_check_answer, dump_message_result, recipient
from schemas.email_client import EmailClientCalloutSchema
from schemas.salesforce import SalesforceCalloutSchema

if TYPE_CHECKING:
    from gateway import Gate

bp = Blueprint("callouts", __name__)

check_request_schema = CheckRequestSchema()
salesforce_schema = SalesforceCalloutSchema()
email_client_schema = EmailClientCalloutSchema()


def load_check(schema: Schema, gate: Gate) -> CheckRequest:
    body = json_body()
    # The common payloads take a lean path where the schema has one; anything else, and every error, is the
    # schema's (marshmallow's ValidationError becomes a 422 with its messages).
    load_common = getattr(schema, "load_common", None)
    check = (load_common(body) if load_common is not None else None) or schema.load(body)
    authorize_source(check.source)  # a key limited to some sources: 403 before anything is checked or logged
    limit = gate.config.max_recipients
    count = sum(len(message.recipients) for message in check.messages)
    if count > limit:
        raise ApiError(413, "too_many_recipients", f"{count} recipients in one request; this gate takes at most {limit}.")
    return check


def run_check(schema: Schema) -> CheckOutcome:
    started = request_started(request.environ)  # the caller's deadline: from the platform's X-Request-Start
    gate = current_app.extensions["gate"]
    check = load_check(schema, gate)
    return gate.checks.run(check, started=started)


@bp.post("/v1/checks")
@require("caller", sources=(Source.WEB.value,))
def generic_check():
    outcome = run_check(check_request_schema)
    return jsonify(dump_check_answer(outcome.check_id, outcome.enabled, outcome.results))


@bp.post("/v1/hooks/salesforce")
@require("caller", sources=(Source.SALESFORCE.value,))
def salesforce_callout():
    started = request_started(request.environ)  # the caller's deadline: from the platform's X-Request-Start
    gate = current_app.extensions["gate"]
    check = load_check(salesforce_schema, gate)
    if check.record_ids():  # ToIds/CcIds/BccIds: addresses from Salesforce, within the check's deadline
        deadline = live_deadline(started, gate.config.check_timeout)
        check = resolve_record_ids(check, gate.salesforce, gate.checks, deadline=deadline, now=time.monotonic(),
                                   to_recipient=recipient)
    outcome = gate.checks.run(check, started=started)
    return jsonify(dump_check_answer(outcome.check_id, outcome.enabled, outcome.results))


@bp.post("/v1/hooks/email-client")
@require("caller", sources=(Source.OUTLOOK.value, Source.GMAIL.value))
def email_client_callout():
    outcome = run_check(email_client_schema)
    (result,) = outcome.results
    return jsonify(check_id=outcome.check_id, enabled=outcome.enabled, **dump_message_result(result))
