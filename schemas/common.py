"""Pieces every caller's schema shares: address parsing and the shape of an answer."""
from __future__ import annotations

from email.utils import parseaddr
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email
from marshmallow import Schema, ValidationError, fields, validate

from gateway.addresses import address_key
from gateway.decisions import MAX_REASON_LENGTH, MessageResult, Recipient, RecipientResult
from gateway.domain import (
    CHECKED_VIA,
    DECISIONS,
    MESSAGE_REASON_CODES,
    RECIPIENT_REASON_CODES,
    RECIPIENT_TYPES,
    WORKFLOWS,
)

MAX_ADDRESS_INPUT = 1000  # longer than any real "Name <address>"; never worth parsing
# Addresses remembered per process: a rep writes to the same people again and again, and email_validator costs
# ~0.07 ms a call. Bounded: at most this many inputs, each at most MAX_ADDRESS_INPUT characters (~10 MB at worst).
NORMALIZED_CACHE_SIZE = 10_000


def normalize_address(raw: str) -> str | None:
    """`  Jane Doe <Jane@Example.COM> ` -> `jane@example.com`; None when it is not one valid address."""
    if len(raw) > MAX_ADDRESS_INPUT:  # never remembered, so a huge input cannot fill the memory
        return _normalize_address(raw)
    return _remembered_address(raw)


def _normalize_address(raw: str) -> str | None:
    text = raw.strip()
    if not text or len(text) > MAX_ADDRESS_INPUT:
        return None
    if "<" in text or ">" in text:
        name, address = parseaddr(text)
        if not address or text.count("<") != 1:
            return None
        text = address
    try:
        checked = validate_email(text, check_deliverability=False, allow_quoted_local=False)
    except EmailNotValidError:
        return None
    return address_key(checked.normalized)


_remembered_address = lru_cache(maxsize=NORMALIZED_CACHE_SIZE)(_normalize_address)  # a pure function: safe to memoize


def recipient(raw: str, kind: str) -> Recipient:
    return Recipient(raw=raw.strip(), email=normalize_address(raw), type=kind)


def validate_sender(value: str) -> None:
    if normalize_address(value) is None:
        raise ValidationError("Not a valid email address.")


def sender_value(raw: str | None) -> str | None:
    """What the blocked-send log records as the sender: the normalized address when it is one."""
    if raw is None or not raw.strip():
        return None
    return normalize_address(raw) or raw.strip()[:320]


WorkflowField = fields.String(
    required=True,
    validate=validate.OneOf(WORKFLOWS),
    metadata={"description": "How the message goes out; decides what a suppressed recipient does."},
)


# Answers ---------------------------------------------------------------------

class RecipientResultSchema(Schema):
    email = fields.String(metadata={"description": "Normalized address, or the input as sent when it is not valid."})
    type = fields.String(validate=validate.OneOf(RECIPIENT_TYPES))
    decision = fields.String(validate=validate.OneOf(DECISIONS))
    reason_code = fields.String(validate=validate.OneOf(RECIPIENT_REASON_CODES))
    reason = fields.String(validate=validate.Length(max=MAX_REASON_LENGTH),  # documents the answer (OpenAPI)
                           metadata={"description": "One sentence for a person, at most 500 characters."})
    checked_via = fields.String(
        validate=validate.OneOf(CHECKED_VIA),
        metadata={"description": "What answered for this address; `validation` when it is not a valid address."},
    )


class MessageResultSchema(Schema):
    id = fields.String(allow_none=True)
    decision = fields.String(validate=validate.OneOf(DECISIONS))
    reason_code = fields.String(validate=validate.OneOf(MESSAGE_REASON_CODES))
    reason = fields.String(validate=validate.Length(max=MAX_REASON_LENGTH),
                           metadata={"description": "One sentence for a person or the add-in's send dialog."})
    deliver_to = fields.List(fields.String(), metadata={"description": "Normalized addresses the message may go to."})
    blocked = fields.List(fields.String(), metadata={"description": "Addresses kept from this message."})
    recipients = fields.List(fields.Nested(RecipientResultSchema))


def dump_recipient_result(result: RecipientResult) -> dict:
    """What RecipientResultSchema dumps, without marshmallow's per-field machinery (the hot path's answer)."""
    return {
        "email": result.email,
        "type": str(result.type),
        "decision": str(result.decision),
        "reason_code": str(result.reason_code),
        "reason": result.reason,
        "checked_via": str(result.checked_via),
    }


def dump_message_result(result: MessageResult) -> dict:
    """What MessageResultSchema dumps (tests/test_hotpath.py holds them equal)."""
    return {
        "id": result.id,
        "decision": str(result.decision),
        "reason_code": str(result.reason_code),
        "reason": result.reason,
        "deliver_to": list(result.deliver_to),
        "blocked": list(result.blocked),
        "recipients": [dump_recipient_result(recipient) for recipient in result.recipients],
    }


def dump_check_answer(check_id: str, enabled: bool, results: list[MessageResult]) -> dict:
    """What CheckAnswerSchema dumps for a CheckOutcome."""
    return {"check_id": check_id, "enabled": bool(enabled), "results": [dump_message_result(r) for r in results]}


class CheckAnswerSchema(Schema):
    check_id = fields.String()
    enabled = fields.Boolean(metadata={"description": "Whether the Marketo check is turned on."})
    results = fields.List(fields.Nested(MessageResultSchema))


class EmailClientAnswerSchema(MessageResultSchema):
    """The email-client callout checks one message: its result, with the check's id at the top."""

    check_id = fields.String()
    enabled = fields.Boolean(metadata={"description": "Whether the Marketo check is turned on."})


class ErrorBodySchema(Schema):
    code = fields.String(metadata={"description": "For machines, e.g. `invalid_request`, `marketo_not_connected`."})
    message = fields.String(metadata={"description": "For people."})
    fields_ = fields.Dict(data_key="fields", metadata={"description": "marshmallow's messages, by field (422 only)."})


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema)
