"""The OpenAPI 3 description of the gate, generated from the marshmallow schemas, and a page to read it.

Both are built once per app (`init_app`): the spec from the schemas in `schemas/`, the page from the spec.
What the schemas cannot say (paths, which errors each endpoint answers, headers) is written here, briefly.
"""
from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, current_app, jsonify

from schemas.admin import (
    BlockedSendsPageSchema,
    BlockedSendsQuerySchema,
    SettingsPatchSchema,
    SettingsSchema,
    StatusSchema,
)
from schemas.checks import CheckRequestSchema
from schemas.common import CheckAnswerSchema, EmailClientAnswerSchema, ErrorSchema
from schemas.email_client import EmailClientCalloutSchema, EmailClientRecipient
from schemas.marketo import FALSE_WORDS, TRUE_WORDS, MarketoFlag, MarketoLeadId, MarketoPushAnswerSchema, MarketoPushSchema
from schemas.salesforce import SalesforceCalloutSchema

bp = Blueprint("openapi", __name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

ERRORS = {
    "400": "The body is not JSON.",
    "401": "No key, an unknown key, or (for keys that require one) a missing, wrong or stale signature.",
    "403": "The key may not call this endpoint or check sends from this source.",
    "413": "The body is over GATEWAY_MAX_BODY_BYTES, or more recipients than GATEWAY_MAX_RECIPIENTS.",
    "415": "The body is not application/json.",
    "422": "JSON of the wrong shape; `fields` holds a message per field.",
    "429": "Over the key's rate limit; see Retry-After.",
    "503": "The gate cannot decide now: its database is down or not migrated (`database_not_migrated`); see Retry-After.",
}
CALLOUT_409 = ("`delivery_in_progress` (a signed delivery with this webhook-id is being answered; see Retry-After) "
               "or `webhook_id_reused` (the webhook-id came with a different body).")
SETTINGS_409 = "`marketo_not_connected`: the check was to be turned on, but Marketo cannot be reached or refuses."
CALLOUT_ERRORS = ("400", "401", "403", "409", "413", "415", "422", "429", "503")
ADMIN_READ_ERRORS = ("401", "403", "429", "503")


def _header(description: str) -> dict:
    return {"description": description, "schema": {"type": "string"}}


ERROR_HEADERS = {
    "401": {"WWW-Authenticate": _header("`Bearer` when the key is missing or unknown.")},
    "409": {"Retry-After": _header("Seconds to wait (delivery_in_progress).")},
    "429": {"Retry-After": _header("Seconds until the rate-limit window resets.")},
    "503": {"Retry-After": _header("Seconds to wait before trying again.")},
}
SIGNATURE_HEADERS = [
    {"name": name, "in": "header", "required": False, "schema": {"type": "string"}, "description": text}
    for name, text in (
        ("webhook-id", "Standard Webhooks: the delivery's id; a repeat gets the first answer."),
        ("webhook-timestamp", "Standard Webhooks: Unix seconds; more than 5 minutes off is refused."),
        ("webhook-signature", "Standard Webhooks: `v1,<base64 HMAC-SHA256 of id.timestamp.body>`."),
    )
]
SIGNED_ANSWER_HEADERS = {"Idempotent-Replayed": _header("`true` when this is the stored answer to a repeated webhook-id.")}
# Answers always carry every field (null where nullable), except these.
OPTIONAL_ANSWER_FIELDS = {("ErrorBody", "fields")}


def _recipient_property(_converter, field, **_):
    """EmailClientRecipient accepts a string or an Office.js EmailAddressDetails object."""
    if isinstance(field, EmailClientRecipient):
        return {
            "oneOf": [
                {"type": "string", "description": "An address, optionally `Name <address>`."},
                {
                    "type": "object",
                    "description": "Office.js EmailAddressDetails (displayName, …); only emailAddress is read.",
                    "properties": {"emailAddress": {"type": "string"}},
                    "required": ["emailAddress"],
                },
            ]
        }
    return {}


def _marketo_push_property(_converter, field, **_):
    """The push's fields as Marketo's tokens fill them: strings, or JSON values for a hand-written template."""
    if isinstance(field, MarketoFlag):
        words = [word for pair in zip(TRUE_WORDS, FALSE_WORDS) for word in pair]
        return {"oneOf": [{"type": "boolean"}, {"type": "string", "enum": words}]}
    if isinstance(field, MarketoLeadId):
        return {"nullable": True, "oneOf": [{"type": "integer", "minimum": 0},
                                            {"type": "string", "pattern": "^[0-9]{0,18}$"}]}
    return {}


def _answers(ok: dict, errors: tuple[str, ...], conflict: str | None = None) -> dict:
    responses = {"200": ok}
    for status in errors:
        answer = {"description": conflict if status == "409" else ERRORS[status],
                  "content": {"application/json": {"schema": "Error"}}}
        if status in ERROR_HEADERS:
            answer["headers"] = ERROR_HEADERS[status]
        responses[status] = answer
    return responses


def _json(schema: str | dict, description: str = "OK", headers: dict | None = None) -> dict:
    answer = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def _body(schema: str, example: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema, "example": example}}}


# The contract's examples: shown on /docs, and sent first by schemathesis.
EXAMPLES = {
    "CheckRequest": {
        "source": "web", "workflow": "multi_select_send", "sender": "rep@acme.example",
        "messages": [{"id": "msg-1", "recipients": [{"email": "jane@example.com", "type": "to"}]},
                     {"id": "msg-2", "recipients": [{"email": "Bob <bob@example.com>", "type": "cc"}]}],
    },
    "SalesforceCallout": {
        "workflow": "single_send", "userId": "005000000000001AAA",
        "records": [{"attributes": {"type": "EmailMessage",
                                    "url": "/services/data/v62.0/sobjects/EmailMessage/02s000000000001AAA"},
                     "Id": "02s000000000001AAA", "ToAddress": "jane@example.com; bob@example.com",
                     "CcAddress": None, "BccAddress": None, "FromAddress": "rep@acme.example", "Subject": "Hello",
                     "RelatedToId": "006000000000001AAA"}],
    },
    "EmailClientCallout": {
        "client": "outlook", "sender": "rep@acme.example",
        "to": [{"emailAddress": "jane@example.com", "displayName": "Jane"}], "cc": ["bob@example.com"], "bcc": [],
        "subject": "Hello",
    },
    "SettingsPatch": {"marketo_check_enabled": True},
    "MarketoPush": {"email": "jane@example.com", "unsubscribed": "true", "leadId": "1001"},
}


def _callout(summary: str, description: str, request: str, answer: str) -> dict:
    return {
        "security": [{"bearer": []}], "summary": summary,
        "description": description + " A key made with `--require-signature` must sign each request "
                                     "(Standard Webhooks) and each webhook-id is answered once.",
        "parameters": SIGNATURE_HEADERS, "requestBody": _body(request, EXAMPLES[request]),
        "responses": _answers(_json(answer, headers=SIGNED_ANSWER_HEADERS), CALLOUT_ERRORS, CALLOUT_409),
    }


def _admin(summary: str, description: str, responses: dict, **more) -> dict:
    return {"security": [{"bearer": []}], "summary": summary, "description": description, **more,
            "responses": responses}


def _require_answer_fields(spec: dict) -> None:
    """Make every field of every answer schema required: the gate always sends them (null where nullable)."""
    schemas = spec["components"]["schemas"]
    answers: set[str] = set()

    def visit(node) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            name = ref.rsplit("/", 1)[-1]
            if ref and name not in answers:
                answers.add(name)
                visit(schemas[name])
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    for operations in spec["paths"].values():
        for operation in operations.values():
            visit(operation["responses"])
    for name in answers:
        properties = schemas[name].get("properties", {})
        schemas[name]["required"] = [key for key in properties if (name, key) not in OPTIONAL_ANSWER_FIELDS]


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
    plugin.converter.add_attribute_function(_marketo_push_property)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                               "description": "A gate key: `Authorization: Bearer <key>`."})
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
        ("MarketoPush", MarketoPushSchema),
        ("MarketoPushAnswer", MarketoPushAnswerSchema),
    ):
        spec.components.schema(name, schema=schema)

    spec.path("/v1/checks", operations={"post": _callout(
        "Check a send from the web app, campaign engine or a script",
        "Workflows plugin_send, single_send, campaign_send and multi_select_send deny a message when any "
        "recipient is suppressed; group_send drops them from deliver_to. One result per message, in order.",
        "CheckRequest", "CheckAnswer")})
    spec.path("/v1/hooks/salesforce", operations={"post": _callout(
        "Check EmailMessage records as Apex serializes them",
        "Address fields are `;`-separated as Salesforce stores them; other record fields are ignored. "
        "One result per record, in order.",
        "SalesforceCallout", "CheckAnswer")})
    spec.path("/v1/hooks/email-client", operations={"post": _callout(
        "Check a draft from the Outlook or Gmail add-in, just before send",
        "Recipients are strings or Office.js EmailAddressDetails objects. The answer is the message's result "
        "with `check_id` and `enabled` at the top; `reason` is the text the add-in shows in its send dialog.",
        "EmailClientCallout", "EmailClientAnswer")})
    spec.path("/v1/hooks/marketo", operations={"post": {
        "security": [{"bearer": []}],
        "summary": "Marketo's webhook: a person unsubscribed (or re-subscribed)",
        "description": "Called by a Marketo smart campaign's \"Call Webhook\" step with a key made with "
                       "`--source marketo` (which may call nothing else). An unsubscribe is written to the mirror "
                       "at once and denied from then on (`checked_via: mirror`), with no call to Marketo. A push "
                       "saying subscribed is never believed alone: for an address the mirror holds, one budgeted "
                       "lookup confirms it after the answer, or the next sync decides. An empty email changes "
                       "nothing. Fields other than these three are ignored.",
        "requestBody": _body("MarketoPush", EXAMPLES["MarketoPush"]),
        "responses": _answers(_json("MarketoPushAnswer"), ("400", "401", "403", "413", "415", "422", "429", "503")),
    }})
    spec.path("/v1/admin/settings", operations={
        "get": _admin("The global check switch, failure policy and Marketo connection (admin)",
                      "Admin keys only. Tests the Marketo connection again when the shown status is older "
                      "than 5 minutes.",
                      _answers(_json("Settings"), ADMIN_READ_ERRORS)),
        "patch": _admin("Turn the check on or off, set the failure policy (admin)",
                        "Admin keys only; JSON booleans only. Turning the check on tests the Marketo "
                        "connection first; turning it off never needs Marketo. Every change is audited with the "
                        "key's name (shown on the console's Audit page).",
                        _answers(_json("Settings"), ("400", "401", "403", "409", "415", "422", "429", "503"),
                                 SETTINGS_409),
                        requestBody=_body("SettingsPatch", EXAMPLES["SettingsPatch"])),
    })
    spec.path("/v1/admin/status", operations={"get": _admin(
        "Marketo calls today against the budget, and the mirror's freshness (admin)",
        "Admin keys only. Never calls Marketo.",
        _answers(_json("Status"), ADMIN_READ_ERRORS))})
    spec.path("/v1/admin/blocked-sends", operations={"get": _admin(
        "The log of blocked sends, newest first (admin)",
        "Admin keys only. JSON pages with `next_cursor`; `format=csv` without `limit` exports every row from "
        "the cursor on, with `limit` one page and the next cursor in `X-Next-Cursor`. The filters (`recipient`, "
        "`sender`, `source`, `workflow`, `since`, `until`) apply to both, and are the console's.",
        _answers({"description": "A page (JSON) or the CSV export.",
                  "headers": {"X-Next-Cursor": _header("CSV with `limit`: the cursor of the next page.")},
                  "content": {"application/json": {"schema": "BlockedSendsPage"},
                              "text/csv": {"schema": {"type": "string"}}}},
                 (*ADMIN_READ_ERRORS, "422")),
        parameters=[{"in": "query", "schema": BlockedSendsQuerySchema}])})
    spec.path("/metrics", operations={"get": {
        "security": [{"bearer": []}],
        "summary": "Metrics in Prometheus's text format (admin key or metrics token)",
        "description": "An admin key, or the token in GATEWAY_METRICS_TOKEN, as `Authorization: Bearer <key>`; a "
                       "caller key is refused. Checks by source, workflow, decision, reason and checked_via; check "
                       "latency; Marketo and Salesforce calls by kind and outcome; rate-limit rejections; the "
                       "switch, budget left, mirror size, lag and load progress, and outbox depth read from the "
                       "database. The names are listed in docs/operations.md. Never calls Marketo.",
        "responses": _answers({"description": "Prometheus text exposition format 0.0.4.",
                               "content": {"text/plain": {"schema": {"type": "string"}}}}, ADMIN_READ_ERRORS)}})
    spec.path("/healthz", operations={"get": {
        "summary": "Liveness: the process is up",
        "description": "No key needed; touches neither the database nor Marketo and is not rate limited.",
        "responses": _answers(_json({"type": "object", "required": ["status"], "additionalProperties": False,
                                     "properties": {"status": {"type": "string", "enum": ["ok"]}}}), ())}})
    spec.path("/readyz", operations={"get": {
        "summary": "Readiness: the database answers and its schema is at the head migration",
        "description": "No key needed; never calls Marketo and is not rate limited. A 503 says what is missing: "
                       "`database_unavailable`, or `database_not_migrated` (run `gateway migrate`).",
        "responses": _answers(_json({"type": "object", "required": ["status"], "additionalProperties": False,
                                     "properties": {"status": {"type": "string", "enum": ["ok"]}}}), ("503",))}})
    document = spec.to_dict()
    _require_answer_fields(document)
    return document


# The docs page --------------------------------------------------------------------------------------------


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def render_docs(app: Flask, spec: dict) -> tuple[str, str]:
    """The page and its Content-Security-Policy: no script, one inline style allowed by its hash."""
    css = (TEMPLATES / "docs.css").read_text(encoding="utf-8")
    html = app.jinja_env.get_template("docs.html").render(spec=spec, css=css)
    csp = (f"default-src 'none'; style-src {_csp_hash(css)}; base-uri 'none'; form-action 'none'; "
           "frame-ancestors 'none'")
    return html, csp


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(current_app.extensions["openapi"])


@bp.get("/docs")
def docs():
    html, csp = current_app.extensions["openapi_docs"]
    response = current_app.make_response(html)
    response.headers["Content-Security-Policy"] = csp
    return response


def init_app(app: Flask) -> None:
    spec = build_spec()
    app.extensions["openapi"] = spec
    app.register_blueprint(bp)
    app.extensions["openapi_docs"] = render_docs(app, spec)
