"""The admin API's inputs and outputs."""
from __future__ import annotations

import base64
import binascii

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from gateway.config import FAILURE_MODES
from gateway.domain import SOURCES, WORKFLOWS

MAX_PAGE = 500
MAX_FILTER_TEXT = 320  # an address is never longer


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"bs:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "bs" or not number.isdigit():
            raise ValueError
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("Not a cursor this gate gave out.") from None


class CursorField(fields.String):
    def _deserialize(self, value, attr, data, **kwargs):
        return decode_cursor(super()._deserialize(value, attr, data, **kwargs))


class StrictBoolean(fields.Boolean):
    """JSON true or false only: 0, 1 and "yes" are not a clear answer to turning a check on or off."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class SettingsPatchSchema(Schema):
    class Meta:
        unknown = RAISE

    marketo_check_enabled = StrictBoolean()
    failure_mode = fields.String(validate=validate.OneOf(FAILURE_MODES))

    @validates_schema
    def not_empty(self, data, **_):
        if not data:
            raise ValidationError("Send at least one of marketo_check_enabled, failure_mode.")


class MarketoStatusSchema(Schema):
    configured = fields.Boolean()
    connected = fields.Boolean(allow_none=True)
    message = fields.String()
    checked_at = fields.DateTime(allow_none=True)


class SettingsSchema(Schema):
    marketo_check_enabled = fields.Boolean()
    failure_mode = fields.String(validate=validate.OneOf(FAILURE_MODES))
    marketo = fields.Nested(MarketoStatusSchema)
    updated_at = fields.DateTime(allow_none=True)
    updated_by = fields.String(allow_none=True)


class BlockedSendsQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    limit = fields.Integer(validate=validate.Range(min=1, max=MAX_PAGE),
                           metadata={"description": "Rows per page (JSON: default 50; CSV: all without it)."})
    cursor = CursorField(metadata={"description": "`next_cursor` of the previous page."})
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "csv")),
                           metadata={"description": "`csv` for text/csv."})
    recipient = fields.String(validate=validate.Length(min=1, max=MAX_FILTER_TEXT),
                              metadata={"description": "Only recipients containing this text (any case)."})
    sender = fields.String(validate=validate.Length(min=1, max=MAX_FILTER_TEXT),
                           metadata={"description": "Only senders containing this text (any case)."})
    source = fields.String(validate=validate.OneOf(SOURCES), metadata={"description": "Only this source."})
    workflow = fields.String(validate=validate.OneOf(WORKFLOWS), metadata={"description": "Only this workflow."})
    since = fields.Date(metadata={"description": "Only rows on or after this UTC day (YYYY-MM-DD)."})
    until = fields.Date(metadata={"description": "Only rows on or before this UTC day (YYYY-MM-DD)."})


class BlockedSendSchema(Schema):
    at = fields.DateTime()
    check_id = fields.String()
    source = fields.String()
    workflow = fields.String()
    sender = fields.String(allow_none=True)
    recipient = fields.String()
    reason_code = fields.String()
    message_id = fields.String(allow_none=True)


class BlockedSendsPageSchema(Schema):
    items = fields.List(fields.Nested(BlockedSendSchema))
    next_cursor = fields.String(allow_none=True)


class CallCountsSchema(Schema):
    day = fields.Date()
    used = fields.Integer(metadata={"description": "Calls that count against Marketo's quota (lookup + sync)."})
    token = fields.Integer()
    lookup = fields.Integer()
    sync = fields.Integer()
    unanswered = fields.Integer(metadata={"description": "Calls that got no answer or a 5xx: not charged to the budget."})


class BudgetSchema(Schema):
    daily = fields.Integer(metadata={"description": "GATEWAY_MARKETO_DAILY_BUDGET"})
    sync_limit = fields.Integer(metadata={"description": "The share of the budget the mirror sync may spend."})
    lookup_limit = fields.Integer(metadata={"description": "The share live lookups may spend (the rest)."})
    remaining = fields.Integer()
    exhausted = fields.Boolean()


class LoadProgressSchema(Schema):
    source = fields.String(metadata={"description": "How the load goes: the list ('smartList 1001', 'staticList "
                                                    "1002'); or, without one, 'createdAt windows or lead ids' until "
                                                    "the newest window chose, then 'lead ids' or 'createdAt windows'."})
    jobs_total = fields.Integer(metadata={"description": "Steps of the load: export jobs (one per 31-day window, or "
                                                        "one), plus the batches of 300 lead ids when it reads by id."})
    jobs_done = fields.Integer(metadata={"description": "Steps whose rows are in the mirror."})
    jobs_in_flight = fields.Integer(metadata={"description": "Export jobs created in Marketo and not yet applied."})
    percent = fields.Float()
    rows = fields.Integer(metadata={"description": "Export rows read so far."})
    elapsed_seconds = fields.Float(metadata={"description": "Since the load began (or until it ended)."})
    eta_seconds = fields.Float(allow_none=True, metadata={
        "description": "Estimated seconds left at the pace so far; null before the first job is done."})


class MirrorStatusSchema(Schema):
    mode = fields.String(validate=validate.OneOf(("mirror", "live")),
                         metadata={"description": "What answers checks now: the mirror while fresh, else live lookups."})
    fresh = fields.Boolean()
    size = fields.Integer(metadata={"description": "Unsubscribed addresses in the mirror."})
    load_status = fields.String(validate=validate.OneOf(("not_started", "loading", "complete")))
    load_window_start = fields.DateTime(allow_none=True)
    last_sync_at = fields.DateTime(allow_none=True)
    lag_seconds = fields.Float(allow_none=True)
    max_age_seconds = fields.Float()
    last_error = fields.String(allow_none=True)
    load_progress = fields.Nested(LoadProgressSchema, allow_none=True, metadata={
        "description": "How far the full load is (null before it is planned); stays once it is complete."})


class OutboxFailureSchema(Schema):
    id = fields.Integer(metadata={"description": "The outbox entry."})
    kind = fields.String(validate=validate.OneOf(("task", "opt_out")))
    recipient = fields.String()
    check_id = fields.String(allow_none=True)
    error = fields.String(metadata={"description": "Salesforce's message for the refused record."})
    at = fields.DateTime(allow_none=True)


class SalesforceStatusSchema(Schema):
    configured = fields.Boolean(metadata={"description": "SALESFORCE_LOGIN_URL, _CLIENT_ID and _CLIENT_SECRET set."})
    log_blocked_sends = fields.Boolean(metadata={"description": "SALESFORCE_LOG_BLOCKED_SENDS"})
    opt_out_writeback = fields.Boolean(metadata={"description": "SALESFORCE_OPT_OUT_WRITEBACK"})
    message = fields.String(allow_none=True, metadata={"description": "Why the features are off, when they are."})
    connected = fields.Boolean(allow_none=True, metadata={"description": "How the last calls went; null: none yet."})
    last_error = fields.String(allow_none=True, metadata={"description": "Salesforce's own words."})
    last_error_at = fields.DateTime(allow_none=True)
    last_success_at = fields.DateTime(allow_none=True)
    retry_at = fields.DateTime(allow_none=True, metadata={"description": "The outbox waits until then (back-off)."})
    outbox_depth = fields.Integer(metadata={"description": "Entries waiting for Salesforce."})
    oldest_pending_at = fields.DateTime(allow_none=True)
    tasks_created = fields.Integer()
    skipped_no_match = fields.Integer(metadata={"description": "Blocked sends no Contact or unconverted Lead has."})
    group_send_drops_not_logged = fields.Integer(metadata={"description": "A group send's silent drops: no Task."})
    opt_outs_written = fields.Integer()
    failed = fields.Integer(metadata={"description": "Records Salesforce refused; see recent_failures."})
    recent_failures = fields.List(fields.Nested(OutboxFailureSchema))


class MarketoCircuitSchema(Schema):
    open = fields.Boolean(attribute="is_open", metadata={
        "description": "Marketo kept failing: live lookups and the sync are answered by policy without calling it, "
                       "except one probe for the whole app every GATEWAY_MARKETO_PROBE_SECONDS."})
    opened_at = fields.DateTime(allow_none=True, metadata={"description": "When it last opened."})
    next_probe_at = fields.DateTime(allow_none=True, metadata={"description": "While open: the next probe's time."})
    opened_total = fields.Integer(metadata={"description": "Times it opened since the database was created."})
    probes_total = fields.Integer(metadata={"description": "Probes sent while it was open, all processes together."})


class StatusSchema(Schema):
    enabled = fields.Boolean(metadata={"description": "Whether the Marketo check is on; false: every send is allowed "
                                                      "(`check_disabled`) until an admin turns it on."})
    marketo_calls_today = fields.Nested(CallCountsSchema)
    budget = fields.Nested(BudgetSchema)
    quota_exhausted_until = fields.DateTime(allow_none=True)
    marketo_circuit = fields.Nested(MarketoCircuitSchema)
    mirror = fields.Nested(MirrorStatusSchema)
    salesforce = fields.Nested(SalesforceStatusSchema)
