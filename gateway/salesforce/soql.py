"""Writing SOQL safely: values quoted with `'`, with `\\` and `'` escaped, as Salesforce's SOQL reference says."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone


def quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def in_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(quote(v) for v in values) + ")"


def datetime_literal(value: datetime) -> str:
    """SOQL's unquoted dateTime literal, in UTC: 2026-11-27T04:00:00Z."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
