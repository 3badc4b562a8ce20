"""The OpenAPI 3 description of the gate, generated from the marshmallow schemas, and a page to read it."""
from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, current_app, jsonify, render_template

from schemas.admin import (
    BlockedSendsPageSchema,
    SettingsPatchSchema,
    SettingsSchema,
    StatusSchema,
)
from schemas.checks import CheckRequestSchema
from schemas.common import CheckAnswerSchema, EmailClientAnswerSchema, ErrorSchema
from schemas.email_client import EmailClientCalloutSchema, EmailClientRecipient
from schemas.salesforce import SalesforceCalloutSchema

bp = Blueprint("openapi", __name__, template_folder="../templates")

ERRORS = {
    "400": "The body is not JSON.",
    "401": "No key, an unknown key, or (for keys that require one) a missing, wrong or stale signature.",
    "403": "The key may not call this endpoint or check sends from this source.",
    "409": "A conflict: see the error's code.",
    "413": "The body is over GATEWAY_MAX_BODY_BYTES, or more recipients than GATEWAY_MAX_RECIPIENTS.",
    "415": "The body is not application/json.",
    "422": "JSON of the wrong shape; `fields` holds a message per field.",
    "429": "Over the key's rate limit; see Retry-After.",
    "503": "The gate cannot decide now (its database is down); see Retry-After.",
}
CALLOUT_ERRORS = ("400", "401", "403", "413", "415", "422", "429", "503")
ADMIN_READ_ERRORS = ("401", "403", "422", "429", "503")

SIGNATURE_HEADERS = [
    {"name": name, "in": "header", "required": False, "schema": {"type": "string"}, "description": text}
    for name, text in (
        ("webhook-id", "Standard Webhooks: the delivery's id; a repeat gets the first answer."),
        ("webhook-timestamp", "Standard Webhooks: Unix seconds; more than 5 minutes off is refused."),
        ("webhook-signature", "Standard Webhooks: `v1,<base64 HMAC-SHA256 of id.timestamp.body>`."),
    )
]


def _recipient_property(_converter, field, **_):
    if isinstance(field, EmailClientRecipient):
        return {
            "oneOf": [
                {"type": "string", "description": "An address, optionally `Name <address>`."},
                {
                    "type": "object",
                    "description": "Office.js EmailAddressDetails; only emailAddress is read.",
                    "properties": {"emailAddress": {"type": "string"}},
                    "required": ["emailAddress"],
                },
            ]
        }
    return {}


def _answers(ok_schema: str | None, errors: tuple[str, ...], ok: dict | None = None) -> dict:
    responses = {}
    if ok is not None:
        responses["200"] = ok
    elif ok_schema is not None:
        responses["200"] = {"description": "OK", "content": {"application/json": {"schema": ok_schema}}}
    for status in errors:
        responses[status] = {"description": ERRORS[status], "content": {"application/json": {"schema": "Error"}}}
    return responses


def _body(schema: str) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def build_spec() -> dict:
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="Marketo unsubscribe gate",
        version="1",
        openapi_version="3.0.3",
        plugins=[plugin],
        info={"description": "Answers, before a sales email leaves, whether it may go to its recipients."},
    )
    plugin.converter.add_attribute_function(_recipient_property)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    for name, schema in (
        ("CheckRequest", CheckRequestSchema),
        ("SalesforceCallout", SalesforceCalloutSchema),
        ("EmailClientCallout", EmailClientCalloutSchema),
        ("CheckAnswer", CheckAnswerSchema),
        ("EmailClientAnswer", EmailClientAnswerSchema),
        ("Settings", SettingsSchema),
        ("SettingsPatch", SettingsPatchSchema),
        ("Status", StatusSchema),
        ("BlockedSendsPage", BlockedSendsPageSchema),
        ("Error", ErrorSchema),
    ):
        spec.components.schema(name, schema=schema)

    secured = {"security": [{"bearer": []}]}
    spec.path("/v1/checks", operations={"post": {
        **secured, "summary": "Check a send from the web app, campaign engine or a script",
        "description": "Workflows plugin_send, single_send, campaign_send and multi_select_send deny a message "
                       "when any recipient is suppressed; group_send drops them from deliver_to.",
        "requestBody": _body("CheckRequest"), "responses": _answers("CheckAnswer", CALLOUT_ERRORS)}})
    spec.path("/v1/hooks/salesforce", operations={"post": {
        **secured, "summary": "Check EmailMessage records as Apex serializes them",
        "description": "One result per record, in order. Keys may require a Standard Webhooks signature.",
        "parameters": SIGNATURE_HEADERS, "requestBody": _body("SalesforceCallout"),
        "responses": _answers("CheckAnswer", (*CALLOUT_ERRORS, "409"))}})
    spec.path("/v1/hooks/email-client", operations={"post": {
        **secured, "summary": "Check a draft from the Outlook or Gmail add-in, just before send",
        "description": "`reason` is the text the add-in shows in its send dialog.",
        "parameters": SIGNATURE_HEADERS, "requestBody": _body("EmailClientCallout"),
        "responses": _answers("EmailClientAnswer", (*CALLOUT_ERRORS, "409"))}})
    spec.path("/v1/admin/settings", operations={
        "get": {**secured, "summary": "The global check switch, failure policy and Marketo connection (admin)",
                "responses": _answers("Settings", ADMIN_READ_ERRORS)},
        "patch": {**secured, "summary": "Turn the check on or off, set the failure policy (admin)",
                  "description": "Turning the check on tests the Marketo connection first: 409 "
                                 "`marketo_not_connected` when it fails.",
                  "requestBody": _body("SettingsPatch"),
                  "responses": _answers("Settings", ("400", "401", "403", "409", "415", "422", "429", "503"))},
    })
    spec.path("/v1/admin/status", operations={"get": {
        **secured, "summary": "Marketo calls today against the budget, and the mirror's freshness (admin)",
        "responses": _answers("Status", ADMIN_READ_ERRORS)}})
    spec.path("/v1/admin/blocked-sends", operations={"get": {
        **secured, "summary": "The log of blocked sends, newest first (admin)",
        "description": "JSON pages with `next_cursor`; `format=csv` without `limit` exports every row from the "
                       "cursor on, with `limit` one page and the next cursor in `X-Next-Cursor`.",
        "parameters": [
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
            {"name": "cursor", "in": "query", "schema": {"type": "string"}},
            {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv"]}},
        ],
        "responses": _answers(None, ADMIN_READ_ERRORS, ok={"description": "OK", "content": {
            "application/json": {"schema": "BlockedSendsPage"},
            "text/csv": {"schema": {"type": "string"}},
        }})}})
    spec.path("/healthz", operations={"get": {
        "summary": "Liveness: the database answers (never calls Marketo)",
        "responses": _answers(None, ("503",), ok={"description": "OK", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"status": {"type": "string", "enum": ["ok"]}}}}}})}})
    return spec.to_dict()


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(current_app.extensions["openapi"])


@bp.get("/docs")
def docs():
    spec = current_app.extensions["openapi"]
    response = current_app.make_response(render_template("docs.html", spec=spec))
    # Server-rendered: the page needs no script and nothing from elsewhere.
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
    return response


def init_app(app) -> None:
    app.extensions["openapi"] = build_spec()
    app.register_blueprint(bp)
