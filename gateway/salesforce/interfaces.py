"""What the gate uses of Salesforce, as one typed seam: `SalesforceService`, with a real and a null implementation.

- `gateway.salesforce.client.SalesforceClient` talks to Salesforce's REST API through simple-salesforce.
- `UnconfiguredSalesforce` stands in when Salesforce is not configured: every call raises
  `SalesforceNotConfigured`, so record ids stay unresolved (the failure policy decides) and nothing is
  written to the outbox. Nothing asks which of the two it holds (the same shape as gateway/marketo/interfaces.py).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.salesforce.errors import SalesforceNotConfigured

NOT_CONFIGURED = ("Salesforce is not configured: set SALESFORCE_LOGIN_URL, SALESFORCE_CLIENT_ID and "
                  "SALESFORCE_CLIENT_SECRET.")
MAX_RECORDS_PER_CALL = 200  # composite/sobjects takes at most this many records


@dataclass(frozen=True)
class RecordResult:
    """Salesforce's answer for one record of a composite call, in the order sent."""

    success: bool
    id: str | None
    message: str | None  # the record's errors, in Salesforce's words, when it failed


class SalesforceService(Protocol):
    """Every method raises a SalesforceError when Salesforce cannot answer (`temporary` tells whether to retry)."""

    @property
    def configured(self) -> bool: ...

    def query(self, soql: str, *, timeout: float | None = None) -> list[dict]:
        """Every record the SOQL query selects, following nextRecordsUrl until done."""

    def create(self, records: Sequence[dict], *, timeout: float | None = None) -> list[RecordResult]:
        """POST composite/sobjects (allOrNone false), at most 200 records."""

    def update(self, records: Sequence[dict], *, timeout: float | None = None) -> list[RecordResult]:
        """PATCH composite/sobjects (allOrNone false), at most 200 records with their Id."""

    def check_connection(self, *, timeout: float | None = None) -> None: ...


class UnconfiguredSalesforce:
    """The null SalesforceService: nothing says where Salesforce is."""

    configured = False

    def query(self, soql: str, *, timeout: float | None = None) -> list[dict]:
        raise SalesforceNotConfigured(NOT_CONFIGURED)

    def create(self, records: Sequence[dict], *, timeout: float | None = None) -> list[RecordResult]:
        raise SalesforceNotConfigured(NOT_CONFIGURED)

    def update(self, records: Sequence[dict], *, timeout: float | None = None) -> list[RecordResult]:
        raise SalesforceNotConfigured(NOT_CONFIGURED)

    def check_connection(self, *, timeout: float | None = None) -> None:
        raise SalesforceNotConfigured(NOT_CONFIGURED)
