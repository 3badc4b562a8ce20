"""What the gate decides, as a pure function: (request, verdict per address) -> result per message.

No I/O and no Flask here. Every caller's schema produces a `CheckRequest`; the resolution chain in
`gateway.checks` produces one `Verdict` per unique address; `decide` applies the workflow rules.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ALLOW, DENY = "allow", "deny"

WORKFLOWS = ("plugin_send", "single_send", "campaign_send", "multi_select_send", "group_send")
SOURCES = ("web", "salesforce", "outlook", "gmail")
RECIPIENT_TYPES = ("to", "cc", "bcc")

# Which reason names a denied message when its recipients were blocked for different reasons.
DENIAL_PRIORITY = ("unsubscribed", "invalid_address", "unverified")

MAX_REASON_LENGTH = 500  # Outlook Smart Alerts shows at most this many characters
NAMES_IN_REASON = 3
NAMES_BUDGET = 300  # characters of addresses in one reason, leaving room for the rest of the sentence


@dataclass(frozen=True)
class Recipient:
    raw: str  # as the caller sent it
    email: str | None  # normalized address; None when it is not a valid address
    type: str = "to"

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
    source: str
    workflow: str
    sender: str | None
    messages: tuple[Message, ...]

    def addresses(self) -> list[str]:
        """Every valid address once, in order of appearance: what has to be resolved."""
        seen: dict[str, None] = {}
        for message in self.messages:
            for recipient in message.recipients:
                if recipient.email is not None:
                    seen.setdefault(recipient.email, None)
        return list(seen)


@dataclass(frozen=True)
class Verdict:
    """What the resolution chain found for one address, and where it came from (`checked_via`)."""

    decision: str
    reason_code: str
    checked_via: str


INVALID_ADDRESS = Verdict(DENY, "invalid_address", "validation")


@dataclass(frozen=True)
class RecipientResult:
    email: str
    type: str
    decision: str
    reason_code: str
    reason: str
    checked_via: str


@dataclass(frozen=True)
class MessageResult:
    id: str | None
    decision: str
    reason_code: str
    reason: str
    deliver_to: tuple[str, ...]
    blocked: tuple[str, ...]
    recipients: tuple[RecipientResult, ...]


def decide(request: CheckRequest, verdicts: Mapping[str, Verdict]) -> list[MessageResult]:
    decide_message = _decide_group_message if request.workflow == "group_send" else _decide_whole_message
    return [decide_message(message, verdicts) for message in request.messages]


def _recipient_results(message: Message, verdicts: Mapping[str, Verdict]) -> tuple[RecipientResult, ...]:
    results = []
    for recipient in message.recipients:
        verdict = INVALID_ADDRESS if recipient.email is None else verdicts[recipient.email]
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
    blocked = [r for r in recipients if r.decision == DENY]
    if blocked:
        reason_code, reason = _denial(blocked)
        return MessageResult(message.id, DENY, reason_code, reason, (), _unique(r.email for r in blocked), recipients)
    reason_code, reason = _approval(recipients, left_out=0)
    return MessageResult(message.id, ALLOW, reason_code, reason, _unique(r.email for r in recipients), (), recipients)


def _decide_group_message(message: Message, verdicts: Mapping[str, Verdict]) -> MessageResult:
    """Group (bulk) sends drop blocked recipients and go on, unless nobody is left."""
    recipients = _recipient_results(message, verdicts)
    blocked = _unique(r.email for r in recipients if r.decision == DENY)
    deliver_to = _unique(r.email for r in recipients if r.decision == ALLOW)
    if not deliver_to:
        reason = "Not sent: no recipient of this group send can receive sales email (unsubscribed, invalid or unverified)."
        return MessageResult(message.id, DENY, "no_recipients_left", reason, (), blocked, recipients)
    reason_code, reason = _approval(recipients, left_out=len(blocked))
    return MessageResult(message.id, ALLOW, reason_code, reason, deliver_to, blocked, recipients)


def recipient_reason(address: str, verdict: Verdict) -> str:
    code = verdict.reason_code
    if code == "unsubscribed":
        text = f"{address} has unsubscribed from email in Marketo."
    elif code == "invalid_address":
        text = f"{address!r} is not a valid email address." if address else "An empty address is not a valid email address."
    elif code == "not_in_marketo":
        text = f"{address} is not in Marketo, so nothing stops the send."
    elif code == "check_disabled":
        text = f"{address} was not checked: the Marketo unsubscribe check is turned off."
    elif code == "unverified" and verdict.decision == DENY:
        text = f"{address} could not be checked because Marketo did not answer; the gate holds email it cannot check."
    elif code == "unverified":
        text = f"{address} could not be checked because Marketo did not answer; the gate's failure policy lets it through."
    else:
        text = f"{address} has not unsubscribed in Marketo."
    return _fit(text)


def _denial(blocked: list[RecipientResult]) -> tuple[str, str]:
    codes = {r.reason_code for r in blocked}
    reason_code = next(code for code in DENIAL_PRIORITY if code in codes)
    named = _unique(r.email for r in blocked if r.reason_code == reason_code)
    others = len(_unique(r.email for r in blocked)) - len(named)
    who = _name_list(named)
    if reason_code == "unsubscribed":
        verb = "has" if len(named) == 1 else "have"
        text = f"Not sent: {who} {verb} unsubscribed from email in Marketo."
    elif reason_code == "invalid_address":
        noun = "is not a valid email address" if len(named) == 1 else "are not valid email addresses"
        text = f"Not sent: {who} {noun}."
    else:
        text = f"Not sent: Marketo could not be reached to check {who}; try again in a few minutes."
    if others:
        text += f" {others} other recipient{'s' if others > 1 else ''} cannot be sent to either."
    return reason_code, _fit(text)


def _approval(recipients: tuple[RecipientResult, ...], left_out: int) -> tuple[str, str]:
    if recipients and all(r.reason_code == "check_disabled" for r in recipients if r.decision == ALLOW):
        if left_out == 0:
            return "check_disabled", "Allowed: the Marketo unsubscribe check is turned off."
    delivered = len(_unique(r.email for r in recipients if r.decision == ALLOW))
    unverified = len(_unique(r.email for r in recipients if r.decision == ALLOW and r.reason_code == "unverified"))
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
    return "allowed", _fit(text)


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
