"""What a blocked send becomes in Salesforce: the outbox rows a check writes, and the Task each one turns into."""
from __future__ import annotations

from collections.abc import Sequence

from gateway.decisions import CheckRequest
from gateway.domain import ReasonCode, Workflow
from gateway.store import BlockedSendEntry, OutboxEntry, OutboxTask

SUBJECTS = {
    ReasonCode.UNSUBSCRIBED: "Email not sent: unsubscribed in Marketo",
    ReasonCode.INVALID_ADDRESS: "Email not sent: not a valid email address",
    ReasonCode.UNVERIFIED: "Email not sent: unsubscribe status could not be verified",
}
REASONS = {
    ReasonCode.UNSUBSCRIBED: "the recipient unsubscribed in Marketo",
    ReasonCode.INVALID_ADDRESS: "the address is not a valid email address",
    ReasonCode.UNVERIFIED: "Marketo could not be asked in time and the gate's failure policy blocks unverified sends",
}
MARKER_LABEL = "Gate reference:"
USER_ID_PREFIX = "005"


def owner_id(request: CheckRequest) -> str | None:
    """The sending Salesforce user, when the callout named one (`userId` 005…): the Task's owner."""
    sender = request.sender or ""
    return sender if sender.startswith(USER_ID_PREFIX) and len(sender) in (15, 18) and sender.isalnum() else None


def outbox_tasks(request: CheckRequest, entries: Sequence[BlockedSendEntry]) -> list[OutboxTask]:
    """One Task per blocked recipient, except a group send's silent drops (Sales Connect logs none either)."""
    if request.workflow == Workflow.GROUP_SEND:
        return []
    owner = owner_id(request)
    return [OutboxTask(check_id=e.check_id, source=e.source, workflow=e.workflow, sender=e.sender,
                       recipient=e.recipient, reason_code=e.reason_code, message_id=e.message_id, owner_id=owner)
            for e in entries]


def task_record(entry: OutboxEntry, who_id: str) -> dict:
    """The Task for one outbox row: completed, on the Contact or Lead, carrying the row's marker."""
    reason = ReasonCode(entry.reason_code) if entry.reason_code in ReasonCode.__members__.values() else None
    lines = [
        f"The unsubscribe gate stopped an email to {entry.recipient}.",
        f"Reason: {REASONS.get(reason, entry.reason_code)}",
        f"Sender: {entry.sender or 'unknown'}",
        f"Source: {entry.source}",
        f"Workflow: {entry.workflow}",
        f"Check: {entry.check_id}",
        f"{MARKER_LABEL} {entry.marker}",
    ]
    record = {
        "attributes": {"type": "Task"},
        "Subject": SUBJECTS.get(reason, "Email not sent"),
        "Description": "\n".join(lines),
        "Status": "Completed",
        "ActivityDate": entry.created_at.date().isoformat(),
        "TaskSubtype": "Email",
        "WhoId": who_id,
    }
    if entry.owner_id:
        record["OwnerId"] = entry.owner_id
    return record
