"""What every part of the Marketo simulator shares: Marketo's error codes and messages, the
error a REST view raises, and how dates and values are written."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

MAX_BATCH_SIZE = 300

ERROR_MESSAGES = {
    "600": "Access token not specified",
    "601": "Access token invalid",
    "602": "Access token expired",
    "603": "Access denied",
    "604": "Request time-out",
    "605": "HTTP Method not supported",
    "606": "Max rate limit '100' exceeded with in '20' secs",
    "607": "Daily quota reached",
    "608": "API Temporarily Unavailable",
    "609": "Invalid JSON",
    "610": "Requested resource not found",
    "611": "System error",
    "612": "Invalid Content Type",
    "613": "Invalid Multipart Request",
    "614": "Invalid Subscription",
    "615": "Concurrent access limit reached",
    "616": "Invalid subscription type",
    "701": "Cannot be blank",
    "702": "No data found for given search scenario",
    "703": "The feature is not enabled for the subscription",
    "704": "Invalid date format",
    "709": "Business Rule Violation",
    "710": "Parent Folder Not Found",
    "711": "Incompatible Folder Type",
    "712": "Merge operation invalid to person account",
    "713": "Transient Error",
    "714": "Unable to find the default record type",
    "718": "ExternalSalesPersonID not found",
    "1003": "Invalid data",
    "1006": "Field not found",
    "1029": "Too many jobs in queue",
    "1035": "Unsupported filter type for target subscription",
}


class SimError(Exception):
    """A Marketo error answered as HTTP 200 ``success: false``."""

    def __init__(self, code: str, message: str | None = None):
        self.code = str(code)
        self.message = message or ERROR_MESSAGES.get(self.code, "Error")
        super().__init__(f"{self.code} {self.message}")


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def fmt_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def as_utc(dt: datetime) -> datetime:
    """An aware UTC datetime (a naive one is taken as UTC)."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def parse_datetime(value: Any) -> datetime | None:
    """An ISO 8601 date or datetime (``Z`` or an offset; none = UTC), or None if it is not one."""
    if isinstance(value, datetime):
        return as_utc(value)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return as_utc(datetime.fromisoformat(value.strip()))
    except ValueError:
        return None


def as_text(value: Any) -> str | None:
    """A field value as Marketo writes it in activities: strings, booleans as true/false."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
