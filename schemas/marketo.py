"""`POST /v1/hooks/marketo`: Marketo's webhook, called from a smart campaign when a person unsubscribes.

The body is the webhook's JSON template with Marketo's tokens filled in as strings:

    {"email": "{{lead.Email Address}}", "unsubscribed": "{{lead.Unsubscribed}}", "leadId": "{{lead.Id}}"}
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load

from schemas.common import normalize_address

TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")
LEAD_ID_DIGITS = re.compile(r"[0-9]{1,18}")


class MarketoFlag(fields.Field):
    """`true`/`false`, `"true"`/`"false"`, `"1"`/`"0"` or `"yes"`/`"no"`, as Marketo fills the token; anything
    else is refused, so a template that sends something else is found by the first push, not guessed at."""

    default_error_messages = {"invalid": 'Must be true or false: true/false, "true"/"false", "1"/"0" or "yes"/"no".'}

    def _deserialize(self, value, attr, data, **kwargs) -> bool:
        if isinstance(value, bool):
            return value
        if value in TRUE_WORDS:
            return True
        if value in FALSE_WORDS:
            return False
        raise self.make_error("invalid")


class MarketoLeadId(fields.Field):
    """Marketo's lead id, as a number or the digits Marketo's token gives; empty when Marketo has none."""

    default_error_messages = {"invalid": "Must be a lead id: a whole number, or empty."}

    def _deserialize(self, value, attr, data, **kwargs) -> int | None:
        if value is None or value == "":
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and LEAD_ID_DIGITS.fullmatch(value):
            return int(value)
        raise self.make_error("invalid")


@dataclass(frozen=True)
class MarketoPush:
    email: str | None  # the address's key; None when the lead has no email (nothing to change)
    unsubscribed: bool
    lead_id: int | None


class MarketoPushSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # a template with more tokens than these still works; they are not read

    email = fields.String(
        required=True, allow_none=True,
        metadata={"description": "`{{lead.Email Address}}`. Empty (a lead without an email) changes nothing."},
    )
    unsubscribed = MarketoFlag(
        required=True,
        metadata={"description": '`{{lead.Unsubscribed}}`: true/false, "true"/"false", "1"/"0" or "yes"/"no".'},
    )
    leadId = MarketoLeadId(  # noqa: N815 (Marketo's name for it)
        load_default=None, allow_none=True,
        metadata={"description": "`{{lead.Id}}`, for the record; the address is what the gate keys on."},
    )

    @post_load
    def to_push(self, data, **_) -> MarketoPush:
        raw = (data["email"] or "").strip()
        email = normalize_address(raw) if raw else None
        if raw and email is None:
            raise ValidationError({"email": ["Not a valid email address."]})
        return MarketoPush(email=email, unsubscribed=data["unsubscribed"], lead_id=data["leadId"])


class MarketoPushAnswerSchema(Schema):
    applied = fields.Boolean(metadata={"description": "True when the push changed the mirror: an unsubscribe, "
                                                      "denied from now on."})
    confirming = fields.Boolean(metadata={
        "description": "A push saying *subscribed* for an address the mirror holds: the gate asks Marketo once "
                       "(budgeted) and drops the address only if Marketo confirms; otherwise the next sync decides."})
    email = fields.String(allow_none=True, metadata={"description": "The address's key, or null when it was empty."})
