"""The admin API's inputs and outputs."""
from __future__ import annotations

import base64
import binascii

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from gateway.config import FAILURE_MODES

MAX_PAGE = 500


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


class BudgetSchema(Schema):
    daily = fields.Integer(metadata={"description": "GATEWAY_MARKETO_DAILY_BUDGET"})
    sync_limit = fields.Integer(metadata={"description": "The share of the budget the mirror sync may spend."})
    remaining = fields.Integer()
    exhausted = fields.Boolean()


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


class StatusSchema(Schema):
    marketo_calls_today = fields.Nested(CallCountsSchema)
    budget = fields.Nested(BudgetSchema)
    quota_exhausted_until = fields.DateTime(allow_none=True)
    mirror = fields.Nested(MirrorStatusSchema)
    salesforce = fields.Nested(SalesforceStatusSchema)
