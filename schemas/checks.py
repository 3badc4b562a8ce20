"""`POST /v1/checks`: the generic form used by the web app, campaign engine and scripts."""
from __future__ import annotations

from marshmallow import RAISE, Schema, fields, post_load, validate

from gateway.decisions import CheckRequest, Message
from gateway.domain import CHECK_SOURCES, RECIPIENT_TYPES, RecipientType, Source
from schemas.common import WorkflowField, recipient, sender_value, validate_sender


class RecipientSchema(Schema):
    class Meta:
        unknown = RAISE

    email = fields.String(
        required=True,
        metadata={"description": "An address, optionally as `Name <address>`. A malformed one denies that recipient."},
    )
    type = fields.String(load_default=RecipientType.TO.value, validate=validate.OneOf(RECIPIENT_TYPES))


class MessageSchema(Schema):
    class Meta:
        unknown = RAISE

    id = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=255))
    recipients = fields.List(fields.Nested(RecipientSchema), required=True, validate=validate.Length(min=1))


class CheckRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    source = fields.String(load_default=Source.WEB.value, validate=validate.OneOf(CHECK_SOURCES))
    workflow = WorkflowField
    sender = fields.String(load_default=None, allow_none=True, validate=validate_sender)
    messages = fields.List(fields.Nested(MessageSchema), required=True, validate=validate.Length(min=1))

    @post_load
    def to_request(self, data, **_):
        return CheckRequest(
            source=data["source"],
            workflow=data["workflow"],
            sender=sender_value(data["sender"]),
            messages=tuple(
                Message(
                    id=message["id"],
                    recipients=tuple(recipient(r["email"], r["type"]) for r in message["recipients"]),
                )
                for message in data["messages"]
            ),
        )
