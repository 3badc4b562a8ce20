"""Events: one log line per thing an operator may count or alert on, under a stable name.

Every part of the gate calls `emit("mirror.synced", windows_loaded=1, ...)`; the line is JSON or key=value text
depending on LOG_FORMAT (gateway/logs.py formats it). The names and their fields are the catalogue below, also in
docs/operations.md ("Events in the logs"). Fields are plain values (strings, numbers, booleans, None, lists of
them): never a secret, a message body or the address of a recipient who was allowed. A denied check names its
recipients masked (`mask_address`); the full addresses are in the blocked-send log, behind an admin key.
"""
from __future__ import annotations

import logging

log = logging.getLogger("gateway.events")

# name -> what it says; the operations notes list the same names with their fields.
CATALOGUE = {
    "check.denied": "a check kept at least one recipient from a message",
    "check.allowed": "counted in /metrics (gateway_checks_total), not logged: it is most checks",
    "switch.off": "the Marketo check is off, so every send is allowed (at start, then every few minutes)",
    "settings.changed": "an admin changed the check switch or the failure policy",
    "marketo.error": "a call to Marketo failed after its retries, or the budget refused it",
    "mirror.worker_started": "a worker began keeping the mirror",
    "mirror.worker_stopped": "a worker stopped",
    "mirror.synced": "a sync ran to its end",
    "mirror.sync_failed": "a sync stopped on an error; the next round tries again",
    "mirror.load_progress": "the full load moved on (emitted by the load's progress report)",
    "mirror.load_planned": "the full load chose how to go on without a list: by lead ids or by createdAt windows",
    "deliveries.pruned": "kept answers of signed callouts past their retention were dropped",
    "deliveries.prune_failed": "dropping old kept answers failed; the next round tries again",
    "salesforce.delivered": "a blocked send was written to Salesforce (emitted by the Salesforce outbox)",
}


def emit(event: str, level: int = logging.INFO, **fields) -> None:
    """Log one event. Cheap when its level is off: nothing is formatted."""
    if event not in CATALOGUE:
        raise ValueError(f"unknown event {event!r}: add it to gateway.events.CATALOGUE and docs/operations.md")
    if log.isEnabledFor(level):
        log.log(level, event, extra={"event": event, "fields": fields})


def mask_address(address: str) -> str:
    """`jane.doe@example.com` -> `j***@example.com`: enough to tell two rows apart, not to mail anyone."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"
