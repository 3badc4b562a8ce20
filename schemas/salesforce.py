"""`POST /v1/hooks/salesforce`: what Apex's `JSON.serialize` makes of a wrapper around EmailMessage records.

sObjects keep Salesforce's field names and an `attributes` member; fields never set are absent, fields set
to null come as null, and any other field of the record is ignored.
"""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate, validates_schema

from gateway.decisions import CheckRequest, Message, Recipient
from gateway.domain import RecipientType, Source
from schemas.common import WorkflowField, recipient, sender_value

# Plain strings (`.value`), as every schema loads callers' words: error messages quote them with repr().
ADDRESS_FIELDS = (
    ("ToAddress", RecipientType.TO.value),
    ("CcAddress", RecipientType.CC.value),
    ("BccAddress", RecipientType.BCC.value),
)
# Recipients as record ids (Contact, Lead or User), resolved by the gate through Salesforce (gateway/salesforce/).
ID_FIELDS = (
    ("ToIds", RecipientType.TO.value),
    ("CcIds", RecipientType.CC.value),
    ("BccIds", RecipientType.BCC.value),
)
MAX_IDS = 2_000
MAX_ADDRESS_FIELD = 32_000  # Salesforce's own limit on these fields is 4,000 characters


def split_addresses(value: str | None) -> list[str]:
    """Salesforce stores several addresses in one field, separated by `;` (some orgs also use `,`)."""
    if not value:
        return []
    return [part.strip() for part in value.replace(",", ";").split(";") if part.strip()]


class AttributesSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    type = fields.String(allow_none=True)
    url = fields.String(allow_none=True)


def record_ids_field() -> fields.List:
    """An Id list as JSON.serialize writes it: strings (15 or 18 characters in practice), null when unset."""
    return fields.List(fields.String(validate=validate.Length(min=1, max=18)), load_default=None, allow_none=True,
                       validate=validate.Length(max=MAX_IDS))



class EmailRecordSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    attributes = fields.Nested(AttributesSchema, allow_none=True)
    Id = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=255))
    ToAddress = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=MAX_ADDRESS_FIELD))
    CcAddress = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=MAX_ADDRESS_FIELD))
    BccAddress = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=MAX_ADDRESS_FIELD))
    FromAddress = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=1000))
    ToIds = record_ids_field()
    CcIds = record_ids_field()
    BccIds = record_ids_field()

    @validates_schema
    def has_recipient(self, data, **_):
        if not any(split_addresses(data.get(name)) for name, _kind in ADDRESS_FIELDS) and not any(
                data.get(name) for name, _kind in ID_FIELDS):
            raise ValidationError("A record needs at least one address in ToAddress, CcAddress or BccAddress, "
                                  "or a record id in ToIds, CcIds or BccIds.", "ToAddress")


class SalesforceCalloutSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    workflow = WorkflowField
    userId = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))
    records = fields.List(fields.Nested(EmailRecordSchema), required=True, validate=validate.Length(min=1))

    @post_load
    def to_request(self, data, **_):
        messages = []
        for record in data["records"]:
            recipients = tuple(
                recipient(address, kind) for name, kind in ADDRESS_FIELDS for address in split_addresses(record[name])
            ) + tuple(
                Recipient(raw=record_id.strip(), email=None, type=kind, record_id=record_id.strip())
                for name, kind in ID_FIELDS for record_id in (record.get(name) or ()) if record_id.strip()
            )
            sender = sender_value(record["FromAddress"]) or data["userId"]
            messages.append(Message(id=record["Id"], recipients=recipients, sender=sender))
        return CheckRequest(
            source=Source.SALESFORCE.value, workflow=data["workflow"], sender=data["userId"], messages=tuple(messages)
        )
