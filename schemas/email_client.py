"""`POST /v1/hooks/email-client`: an Outlook (Smart Alerts) or Gmail add-in, just before send."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate, validates_schema

from gateway.decisions import CheckRequest, Message
from gateway.domain import RECIPIENT_TYPES, WORKFLOWS, Source, Workflow
from schemas.common import recipient, sender_value, validate_sender


class EmailClientRecipient(fields.Field):
    """A plain string, or an Office.js `EmailAddressDetails` object (`emailAddress`, `displayName`, …)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and isinstance(value.get("emailAddress"), str):
            return value["emailAddress"]
        raise ValidationError("Expected an address string or an object with a string `emailAddress`.")


def _recipient_list(description):
    return fields.List(EmailClientRecipient(), load_default=list, metadata={"description": description})


class EmailClientCalloutSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    client = fields.String(required=True, validate=validate.OneOf((Source.OUTLOOK.value, Source.GMAIL.value)))
    workflow = fields.String(load_default=Workflow.PLUGIN_SEND.value, validate=validate.OneOf(WORKFLOWS))
    sender = fields.String(load_default=None, allow_none=True, validate=validate_sender)
    to = _recipient_list("To recipients")
    cc = _recipient_list("Cc recipients")
    bcc = _recipient_list("Bcc recipients")
    # Accepted so add-ins can send the draft as they have it; the gate never stores or logs it.
    subject = fields.String(load_default=None, allow_none=True)
    id = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=255))

    @validates_schema
    def has_recipient(self, data, **_):
        if not (data.get("to") or data.get("cc") or data.get("bcc")):
            raise ValidationError("The message needs at least one recipient in to, cc or bcc.", "to")

    @post_load
    def to_request(self, data, **_):
        recipients = tuple(recipient(address, kind) for kind in RECIPIENT_TYPES for address in data[kind])
        return CheckRequest(
            source=data["client"],
            workflow=data["workflow"],
            sender=sender_value(data["sender"]),
            messages=(Message(id=data["id"], recipients=recipients),),
        )
