"""Finding Contacts, Leads and Users: batched SOQL, one query per object type and batch."""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence

from gateway.salesforce.interfaces import MAX_RECORDS_PER_CALL, SalesforceService
from gateway.salesforce.soql import in_list, quote

# Keeps a query's URL well under Salesforce's 16,384-byte limit on a request line.
MAX_QUERY_VALUES_CHARS = 8_000
ID_PREFIXES = {"003": "Contact", "00Q": "Lead", "005": "User"}
UNCONVERTED = {"Contact": "", "Lead": " AND IsConverted = false", "User": ""}


def batches(values: Sequence[str], *, max_count: int = MAX_RECORDS_PER_CALL,
            max_chars: int = MAX_QUERY_VALUES_CHARS) -> Iterator[list[str]]:
    """`values` in runs short enough for one query: at most `max_count` values and `max_chars` of quoted text."""
    batch: list[str] = []
    size = 0
    for value in values:
        length = len(quote(value)) + 2
        if batch and (len(batch) >= max_count or size + length > max_chars):
            yield batch
            batch, size = [], 0
        batch.append(value)
        size += length
    if batch:
        yield batch


def who_ids_by_email(salesforce: SalesforceService, emails: Iterable[str], *,
                     timeout: float | None = None) -> dict[str, str]:
    """lower-cased email → the Contact with it, else the unconverted Lead: one query per object type per batch."""
    wanted = list(dict.fromkeys(e.lower() for e in emails))
    found: dict[str, str] = {}
    for batch in batches(wanted):
        for sobject in ("Contact", "Lead"):
            open_ = [e for e in batch if e not in found]
            if not open_:
                break
            records = salesforce.query(
                f"SELECT Id, Email FROM {sobject} WHERE Email IN {in_list(open_)}{UNCONVERTED[sobject]} ORDER BY Id",
                timeout=timeout)
            for record in records:
                found.setdefault((record.get("Email") or "").lower(), record["Id"])
    return {email: found[email] for email in wanted if email in found}


def not_opted_out(salesforce: SalesforceService, emails: Sequence[str], *,
                  timeout: float | None = None) -> list[tuple[str, str, str]]:
    """(object type, Id, lower-cased email) of every Contact and unconverted Lead with one of `emails` still opted in."""
    found = []
    for batch in batches(list(dict.fromkeys(e.lower() for e in emails))):
        for sobject in ("Contact", "Lead"):
            records = salesforce.query(
                f"SELECT Id, Email FROM {sobject} WHERE Email IN {in_list(batch)}{UNCONVERTED[sobject]} "
                f"AND HasOptedOutOfEmail = false", timeout=timeout)
            found.extend((sobject, r["Id"], (r.get("Email") or "").lower()) for r in records)
    return found


def emails_by_record_id(salesforce: SalesforceService, ids: Iterable[str], *, deadline: float) -> dict[str, str]:
    """Contact, Lead and User ids as sent (15 or 18 characters) → their Email, where one has one.

    Ids of another kind, or that no record has, are left out; so is whatever is left when `deadline`
    (time.monotonic()) passes. Salesforce's errors are the caller's to catch.
    """
    by_type: dict[str, list[str]] = {}
    for record_id in dict.fromkeys(ids):
        sobject = ID_PREFIXES.get(record_id[:3])
        if sobject and len(record_id) in (15, 18) and record_id.isalnum():
            by_type.setdefault(sobject, []).append(record_id)
    emails: dict[str, str] = {}
    for sobject, record_ids in by_type.items():
        for batch in batches(record_ids):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return emails
            records = salesforce.query(f"SELECT Id, Email FROM {sobject} WHERE Id IN {in_list(batch)}",
                                       timeout=remaining)
            # Salesforce answers with 18-character ids; the first 15 are the case-sensitive id itself.
            by_prefix = {r["Id"][:15]: r.get("Email") for r in records}
            for record_id in batch:
                email = by_prefix.get(record_id[:15])
                if email:
                    emails[record_id] = email
    return emails
