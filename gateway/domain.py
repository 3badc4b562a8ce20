"""The gate's words, named once: what callers send, what the gate answers, and how a signed delivery stands.

Each is a `StrEnum`, so a member is its string: it goes into JSON, the database and comparisons with plain
strings unchanged. Validators, the OpenAPI description and the CLI take the plain lists below (`values`),
in the order the contract lists them, since some libraries treat an `Enum` by its member names.
"""
from __future__ import annotations

from enum import StrEnum


class Source(StrEnum):
    """Who asks: the caller's product."""

    WEB = "web"
    SALESFORCE = "salesforce"
    OUTLOOK = "outlook"
    GMAIL = "gmail"
    MARKETO = "marketo"  # not a check: Marketo pushing an unsubscribe (POST /v1/hooks/marketo)


class Workflow(StrEnum):
    """How the message goes out; `group_send` drops blocked recipients, every other one holds the message."""

    PLUGIN_SEND = "plugin_send"
    SINGLE_SEND = "single_send"
    CAMPAIGN_SEND = "campaign_send"
    MULTI_SELECT_SEND = "multi_select_send"
    GROUP_SEND = "group_send"


class RecipientType(StrEnum):
    TO = "to"
    CC = "cc"
    BCC = "bcc"


class Decision(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class ReasonCode(StrEnum):
    ALLOWED = "allowed"
    UNSUBSCRIBED = "unsubscribed"
    INVALID_ADDRESS = "invalid_address"
    UNVERIFIED = "unverified"  # Marketo did not answer: the failure policy decided
    CHECK_DISABLED = "check_disabled"
    NOT_IN_MARKETO = "not_in_marketo"  # a recipient's only
    NO_RECIPIENTS_LEFT = "no_recipients_left"  # a group send's message only


class CheckedVia(StrEnum):
    """What answered for an address."""

    MIRROR = "mirror"
    CACHE = "cache"
    LIVE = "live"
    POLICY = "policy"
    SETTING = "setting"
    VALIDATION = "validation"  # not a valid address: nothing was asked


class DeliveryState(StrEnum):
    """Where a signed callout's webhook-id stands when it is claimed (store.deliveries.claim)."""

    CLAIMED = "claimed"  # run the check, then complete or release the claim
    DONE = "done"  # answered already: give the kept answer again
    IN_PROGRESS = "in_progress"  # another request is answering it now
    MISMATCH = "mismatch"  # the id came before with a different request


def values(words: type[StrEnum]) -> tuple[str, ...]:
    return tuple(word.value for word in words)


SOURCES = values(Source)
CHECK_SOURCES = tuple(source for source in SOURCES if source != Source.MARKETO)  # who may ask for a check
WORKFLOWS = values(Workflow)
RECIPIENT_TYPES = values(RecipientType)
DECISIONS = values(Decision)
CHECKED_VIA = values(CheckedVia)
RECIPIENT_REASON_CODES = tuple(code.value for code in ReasonCode if code is not ReasonCode.NO_RECIPIENTS_LEFT)
MESSAGE_REASON_CODES = tuple(code.value for code in ReasonCode if code is not ReasonCode.NOT_IN_MARKETO)
