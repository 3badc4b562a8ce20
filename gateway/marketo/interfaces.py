"""What the gate uses of Marketo, as one typed seam: `MarketoService`, with a real and a null implementation.

- `gateway.marketo.client.MarketoClient` talks to Marketo.
- `UnconfiguredMarketo` stands in when MARKETO_BASE_URL, MARKETO_CLIENT_ID or MARKETO_CLIENT_SECRET is unset: it
  answers like a Marketo that cannot be reached (every lookup fails, every other call raises), so the failure
  policy decides and the admin sees why. Nothing asks which of the two it holds.

`gateway.build_marketo` picks one from the configuration, the way Warehouse's `interfaces.py` pairs each service
with a null one. Salesforce gets the same shape: a Protocol, its client, its null twin.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from gateway.marketo.errors import MarketoError, MarketoNotConfigured

NOT_CONFIGURED = "Marketo is not configured: set MARKETO_BASE_URL, MARKETO_CLIENT_ID and MARKETO_CLIENT_SECRET."


@dataclass(frozen=True)
class LookupResult:
    """What Marketo said about each requested email; every email is in exactly one field."""

    unsubscribed: dict[str, bool]  # emails Marketo has -> True if any of their leads unsubscribed
    not_found: frozenset[str]  # emails Marketo has no lead for
    failed: dict[str, MarketoError]  # emails whose batch could not be answered, with why


@dataclass(frozen=True)
class ActivityPage:
    """One page of the activity stream (leadchanges.json)."""

    activities: tuple[dict, ...]
    next_page_token: str  # where the next page starts; also where to resume after the last one
    more_result: bool  # Marketo has more right now; a short page can still have more


class MarketoService(Protocol):
    """Every method raises a MarketoError when Marketo cannot answer; `lookup_emails` reports them per email."""

    @property
    def quota_exhausted_until(self) -> datetime | None:
        """After Marketo's error 607: when its daily quota resets (aware, UTC); None otherwise."""

    # checks and the admin's connection test
    def lookup_emails(self, emails: Iterable[str], *, timeout: float, kind: str = "lookup") -> LookupResult: ...

    def check_connection(self, *, timeout: float) -> None: ...

    # the mirror: the change stream
    def paging_token(self, since: datetime, *, timeout: float = 30.0) -> str: ...

    def lead_changes_page(self, page_token: str, fields: Sequence[str], *, timeout: float = 30.0) -> ActivityPage: ...

    def leads_by_id(
        self, lead_ids: Iterable[int], *, fields: Sequence[str] = ("id", "email", "unsubscribed"), timeout: float = 30.0
    ) -> list[dict]: ...

    # the mirror: the full load through Bulk Lead Extract
    def create_lead_export(
        self, fields: Sequence[str], created_from: datetime, created_to: datetime, *, timeout: float = 30.0
    ) -> str: ...

    def create_list_export(self, fields: Sequence[str], list_kind: str, list_id: int, *, timeout: float = 30.0) -> str: ...

    def list_id_by_name(self, list_kind: str, name: str, *, timeout: float = 30.0) -> int: ...

    def enqueue_lead_export(self, export_id: str, *, timeout: float = 30.0) -> str: ...

    def lead_export_status(self, export_id: str, *, timeout: float = 30.0) -> dict: ...

    def lead_export_rows(self, export_id: str, *, timeout: float = 120.0) -> Iterator[dict[str, str]]: ...


class UnconfiguredMarketo:
    """The null MarketoService: Marketo cannot be reached, because nothing says where it is."""

    quota_exhausted_until: datetime | None = None  # never called, so never stopped by Marketo's quota

    def lookup_emails(self, emails: Iterable[str], *, timeout: float, kind: str = "lookup") -> LookupResult:
        failed: dict[str, MarketoError] = dict.fromkeys(emails, self._error())
        return LookupResult(unsubscribed={}, not_found=frozenset(), failed=failed)

    def check_connection(self, *, timeout: float) -> None:
        raise self._error()

    def paging_token(self, since: datetime, *, timeout: float = 30.0) -> str:
        raise self._error()

    def lead_changes_page(self, page_token: str, fields: Sequence[str], *, timeout: float = 30.0) -> ActivityPage:
        raise self._error()

    def leads_by_id(
        self, lead_ids: Iterable[int], *, fields: Sequence[str] = ("id", "email", "unsubscribed"), timeout: float = 30.0
    ) -> list[dict]:
        raise self._error()

    def create_lead_export(
        self, fields: Sequence[str], created_from: datetime, created_to: datetime, *, timeout: float = 30.0
    ) -> str:
        raise self._error()

    def create_list_export(self, fields: Sequence[str], list_kind: str, list_id: int, *, timeout: float = 30.0) -> str:
        raise self._error()

    def list_id_by_name(self, list_kind: str, name: str, *, timeout: float = 30.0) -> int:
        raise self._error()

    def enqueue_lead_export(self, export_id: str, *, timeout: float = 30.0) -> str:
        raise self._error()

    def lead_export_status(self, export_id: str, *, timeout: float = 30.0) -> dict:
        raise self._error()

    def lead_export_rows(self, export_id: str, *, timeout: float = 120.0) -> Iterator[dict[str, str]]:
        raise self._error()

    @staticmethod
    def _error() -> MarketoNotConfigured:
        return MarketoNotConfigured(NOT_CONFIGURED)
