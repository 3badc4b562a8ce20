"""`POST /v1/hooks/email-client`: an Outlook (Smart Alerts) or Gmail add-in, just before send."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate, validates_schema

from gateway.decisions import CheckRequest, Message
from gateway.domain import RECIPIENT_TYPES, WORKFLOWS, Source, Workflow
from schemas.common import normalize_address, recipient, sender_value, validate_sender

CLIENTS = (Source.OUTLOOK.value, Source.GMAIL.value)


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

    client = fields.String(required=True, validate=validate.OneOf(CLIENTS))
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
        return email_client_request(data)

    def load_common(self, body) -> CheckRequest | None:
        """The payloads add-ins send, read without marshmallow's machinery; None for anything this does not
        accept exactly as `load` would, which `load` then reads (so every error is the schema's own).
        tests/test_hotpath.py holds the two equal on generated payloads."""
        return load_common_payload(body)


def email_client_request(data: dict) -> CheckRequest:
    recipients = tuple(recipient(address, kind) for kind in RECIPIENT_TYPES for address in data[kind])
    return CheckRequest(
        source=data["client"],
        workflow=data["workflow"],
        sender=sender_value(data["sender"]),
        messages=(Message(id=data["id"], recipients=recipients),),
    )


def load_common_payload(body) -> CheckRequest | None:
    if type(body) is not dict:
        return None
    client = body.get("client")
    if type(client) is not str or client not in CLIENTS:
        return None
    workflow = body.get("workflow", Workflow.PLUGIN_SEND.value)
    if type(workflow) is not str or workflow not in WORKFLOWS:
        return None
    sender = body.get("sender")
    if sender is not None and (type(sender) is not str or normalize_address(sender) is None):
        return None
    subject = body.get("subject")
    if subject is not None and type(subject) is not str:
        return None
    message_id = body.get("id")
    if message_id is not None and (type(message_id) is not str or len(message_id) > 255):
        return None
    data = {"client": client, "workflow": workflow, "sender": sender, "id": message_id}
    for kind in RECIPIENT_TYPES:
        addresses = _plain_addresses(body.get(kind, ()))
        if addresses is None:
            return None
        data[kind] = addresses
    if not (data["to"] or data["cc"] or data["bcc"]):
        return None
    return email_client_request(data)


def _plain_addresses(value) -> list[str] | None:
    """A list of strings or `{"emailAddress": "..."}` objects as strings; None for anything else."""
    if type(value) is tuple:  # absent
        return []
    if type(value) is not list:
        return None
    addresses = []
    for item in value:
        if type(item) is str:
            addresses.append(item)
        elif type(item) is dict and type(item.get("emailAddress")) is str:
            addresses.append(item["emailAddress"])
        else:
            return None
    return addresses
