"""Recipients given as Salesforce record ids (an EmailMessage's ToIds, CcIds, BccIds) turned into addresses.

One SOQL query per object type (Contact, Lead, User) and batch, within the check's deadline. An id that
cannot be resolved (no such record, no email, Salesforce down, not configured, out of time) stays a
recipient whose email is the id as sent, `unverified`, decided by the failure policy, as Marketo's
unanswered addresses are.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from gateway.checks import CHECK_DISABLED, CheckService
from gateway.decisions import CheckRequest, Recipient, Verdict
from gateway.domain import CheckedVia, Decision, ReasonCode, RecipientType
from gateway.salesforce.errors import SalesforceError, SalesforceNotConfigured
from gateway.salesforce.interfaces import SalesforceService
from gateway.salesforce.records import emails_by_record_id

log = logging.getLogger(__name__)

# Resolving ids may use this share of what is left of the check's deadline; the rest stays for Marketo.
RESOLVE_SHARE = 0.5


def unresolved_verdict(checks: CheckService) -> Verdict:
    """What an id that could not be resolved gets: the failure policy, unless the check is off altogether."""
    settings, _sync = checks.context()
    if not settings.marketo_check_enabled:
        return CHECK_DISABLED
    decision = Decision.DENY if checks.failure_mode(settings) == Decision.DENY else Decision.ALLOW
    return Verdict(decision, ReasonCode.UNVERIFIED, CheckedVia.POLICY)


def resolve_record_ids(request: CheckRequest, salesforce: SalesforceService, checks: CheckService, *,
                       deadline: float, now: float, to_recipient: Callable[[str, str], Recipient]) -> CheckRequest:
    """`request` with every record id replaced by its address (through `to_recipient`, the schemas' normalizer)."""
    ids = request.record_ids()
    if not ids:
        return request
    emails: dict[str, str] = {}
    try:
        emails = emails_by_record_id(salesforce, ids, deadline=now + (deadline - now) * RESOLVE_SHARE)
    except SalesforceNotConfigured:
        pass
    except SalesforceError as error:
        log.warning("could not resolve %d Salesforce record ids: %s", len(ids), error)
    fallback = unresolved_verdict(checks) if len(emails) < len(ids) else None

    def resolved(recipient: Recipient) -> Recipient:
        if recipient.record_id is None:
            return recipient
        email = emails.get(recipient.record_id)
        if email is not None:
            return to_recipient(email, RecipientType(recipient.type).value)
        return replace(recipient, email=recipient.record_id, preset=fallback)

    messages = tuple(replace(m, recipients=tuple(resolved(r) for r in m.recipients)) for m in request.messages)
    return replace(request, messages=messages)
