"""What the gate decides, as a pure function: (request, verdict per address) -> result per message.

No I/O and no Flask here. Every caller's schema produces a `CheckRequest`; the resolution chain in
`gateway.checks` produces one `Verdict` per unique address; `decide` applies the workflow rules.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.domain import CheckedVia, Decision, ReasonCode, RecipientType, Source, Workflow

# Which reason names a denied message when its recipients were blocked for different reasons.
DENIAL_PRIORITY = (ReasonCode.UNSUBSCRIBED, ReasonCode.INVALID_ADDRESS, ReasonCode.UNVERIFIED)

MAX_REASON_LENGTH = 500  # Outlook Smart Alerts shows at most this many characters
NAMES_IN_REASON = 3
NAMES_BUDGET = 300  # characters of addresses in one reason, leaving room for the rest of the sentence


@dataclass(frozen=True)
class Recipient:
    raw: str  # as the caller sent it
    email: str | None  # normalized address; None when it is not a valid address
    type: RecipientType = RecipientType.TO
    # A Salesforce Contact, Lead or User id given instead of an address (ToIds/CcIds/BccIds), until resolved.
    record_id: str | None = None
    # Decided before the chain runs: an id that could not be resolved gets the failure policy's verdict.
    preset: Verdict | None = None

    @property
    def shown(self) -> str:
        return self.email or self.raw


@dataclass(frozen=True)
class Message:
    id: str | None
    recipients: tuple[Recipient, ...]
    sender: str | None = None  # when one request carries messages from several senders (Salesforce)


@dataclass(frozen=True)
class CheckRequest:
    source: Source
    workflow: Workflow
    sender: str | None
    messages: tuple[Message, ...]

    def record_ids(self) -> list[str]:
        """Every Salesforce record id given instead of an address, once: what Salesforce has to resolve."""
        return list(dict.fromkeys(r.record_id for m in self.messages for r in m.recipients if r.record_id))

    def addresses(self) -> list[str]:
        """Every valid address once, in order of appearance: what has to be resolved."""
        seen: dict[str, None] = {}
        for message in self.messages:
            for recipient in message.recipients:
                if recipient.email is not None and recipient.preset is None:
                    seen.setdefault(recipient.email, None)
        return list(seen)


@dataclass(frozen=True)
class Verdict:
    """What the resolution chain found for one address, and where it came from (`checked_via`)."""

    decision: Decision
    reason_code: ReasonCode
    checked_via: CheckedVia


INVALID_ADDRESS = Verdict(Decision.DENY, ReasonCode.INVALID_ADDRESS, CheckedVia.VALIDATION)


@dataclass(frozen=True)
class RecipientResult:
    email: str
    type: RecipientType
    decision: Decision
    reason_code: ReasonCode
    reason: str
    checked_via: CheckedVia


@dataclass(frozen=True)
class MessageResult:
    id: str | None
    decision: Decision
    reason_code: ReasonCode
    reason: str
    deliver_to: tuple[str, ...]
    blocked: tuple[str, ...]
    recipients: tuple[RecipientResult, ...]


def decide(request: CheckRequest, verdicts: Mapping[str, Verdict]) -> list[MessageResult]:
    decide_message = _decide_group_message if request.workflow == Workflow.GROUP_SEND else _decide_whole_message
    return [decide_message(message, verdicts) for message in request.messages]


def _recipient_results(message: Message, verdicts: Mapping[str, Verdict]) -> tuple[RecipientResult, ...]:
    results = []
    for recipient in message.recipients:
        verdict = recipient.preset or (INVALID_ADDRESS if recipient.email is None else verdicts[recipient.email])
        results.append(
            RecipientResult(
                email=recipient.shown,
                type=recipient.type,
                decision=verdict.decision,
                reason_code=verdict.reason_code,
                reason=recipient_reason(recipient.shown, verdict),
                checked_via=verdict.checked_via,
            )
        )
    return tuple(results)


def _decide_whole_message(message: Message, verdicts: Mapping[str, Verdict]) -> MessageResult:
    """Plug-in, single, campaign and multi-select sends: one blocked recipient holds the whole message."""
    recipients = _recipient_results(message, verdicts)
    blocked = [r for r in recipients if r.decision == Decision.DENY]
    if blocked:
        reason_code, reason = _denial(blocked)
        blocked_emails = _unique(r.email for r in blocked)
        return MessageResult(message.id, Decision.DENY, reason_code, reason, (), blocked_emails, recipients)
    reason_code, reason = _approval(recipients, left_out=0)
    deliver_to = _unique(r.email for r in recipients)
    return MessageResult(message.id, Decision.ALLOW, reason_code, reason, deliver_to, (), recipients)


def _decide_group_message(message: Message, verdicts: Mapping[str, Verdict]) -> MessageResult:
    """Group (bulk) sends drop blocked recipients and go on, unless nobody is left."""
    recipients = _recipient_results(message, verdicts)
    blocked = _unique(r.email for r in recipients if r.decision == Decision.DENY)
    deliver_to = _unique(r.email for r in recipients if r.decision == Decision.ALLOW)
    if not deliver_to:
        reason = "Not sent: no recipient of this group send can receive sales email (unsubscribed, invalid or unverified)."
        return MessageResult(message.id, Decision.DENY, ReasonCode.NO_RECIPIENTS_LEFT, reason, (), blocked, recipients)
    reason_code, reason = _approval(recipients, left_out=len(blocked))
    return MessageResult(message.id, Decision.ALLOW, reason_code, reason, deliver_to, blocked, recipients)


def recipient_reason(address: str, verdict: Verdict) -> str:
    code = verdict.reason_code
    if code == ReasonCode.UNSUBSCRIBED:
        text = f"{address} has unsubscribed from email in Marketo."
    elif code == ReasonCode.INVALID_ADDRESS:
        text = f"{address!r} is not a valid email address." if address else "An empty address is not a valid email address."
    elif code == ReasonCode.NOT_IN_MARKETO:
        text = f"{address} is not in Marketo, so nothing stops the send."
    elif code == ReasonCode.CHECK_DISABLED:
        text = f"{address} was not checked: the Marketo unsubscribe check is turned off."
    elif code == ReasonCode.UNVERIFIED and verdict.decision == Decision.DENY:
        text = f"{address} could not be checked because Marketo did not answer; the gate holds email it cannot check."
    elif code == ReasonCode.UNVERIFIED:
        text = f"{address} could not be checked because Marketo did not answer; the gate's failure policy lets it through."
    else:
        text = f"{address} has not unsubscribed in Marketo."
    return _fit(text)


def _denial(blocked: list[RecipientResult]) -> tuple[ReasonCode, str]:
    codes = {r.reason_code for r in blocked}
    reason_code = next(code for code in DENIAL_PRIORITY if code in codes)
    named = _unique(r.email for r in blocked if r.reason_code == reason_code)
    others = len(_unique(r.email for r in blocked)) - len(named)
    who = _name_list(named)
    if reason_code == ReasonCode.UNSUBSCRIBED:
        verb = "has" if len(named) == 1 else "have"
        text = f"Not sent: {who} {verb} unsubscribed from email in Marketo."
    elif reason_code == ReasonCode.INVALID_ADDRESS:
        noun = "is not a valid email address" if len(named) == 1 else "are not valid email addresses"
        text = f"Not sent: {who} {noun}."
    else:
        text = f"Not sent: Marketo could not be reached to check {who}; try again in a few minutes."
    if others:
        text += f" {others} other recipient{'s' if others > 1 else ''} cannot be sent to either."
    return reason_code, _fit(text)


def _approval(recipients: tuple[RecipientResult, ...], left_out: int) -> tuple[ReasonCode, str]:
    # One pass over the recipients (this runs for every allowed message): the allowed addresses, once each.
    allowed: dict[str, None] = {}
    unverified_addresses: dict[str, None] = {}
    all_check_disabled = True
    for r in recipients:
        if r.decision == Decision.ALLOW:
            allowed[r.email] = None
            if r.reason_code != ReasonCode.CHECK_DISABLED:
                all_check_disabled = False
            if r.reason_code == ReasonCode.UNVERIFIED:
                unverified_addresses[r.email] = None
    if recipients and all_check_disabled and left_out == 0:
        return ReasonCode.CHECK_DISABLED, "Allowed: the Marketo unsubscribe check is turned off."
    delivered = len(allowed)
    unverified = len(unverified_addresses)
    if left_out:
        text = (
            f"Allowed: sending to {delivered} of {delivered + left_out} recipients; "
            f"{left_out} left out because they unsubscribed in Marketo or cannot be checked."
        )
    elif delivered == 1:
        text = "Allowed: the recipient has not unsubscribed in Marketo."
    else:
        text = f"Allowed: none of the {delivered} recipients has unsubscribed in Marketo."
    if unverified:
        text += f" {unverified} could not be checked because Marketo did not answer; the failure policy allows them."
    return ReasonCode.ALLOWED, _fit(text)


def _name_list(addresses: tuple[str, ...]) -> str:
    """At most three names, and only as many as leave room in the sentence for the count of the rest."""
    shown: list[str] = []
    for address in addresses[:NAMES_IN_REASON]:
        if shown and sum(map(len, shown)) + len(address) > NAMES_BUDGET:
            break
        shown.append(address or "an empty address")
    rest = len(addresses) - len(shown)
    if rest:
        return ", ".join(shown) + f" and {rest} other{'s' if rest > 1 else ''}"
    if len(shown) == 1:
        return shown[0]
    return ", ".join(shown[:-1]) + " and " + shown[-1]


def _unique(values) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _fit(text: str) -> str:
    if len(text) <= MAX_REASON_LENGTH:
        return text
    return text[: MAX_REASON_LENGTH - 1].rstrip() + "…"
