"""How the gate's calls to Salesforce went (the one salesforce_state row): shown to admins, and the outbox's back-off."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update

from gateway.store.common import as_utc, utcnow
from gateway.store.models import SalesforceState
from gateway.store.repository import Repository

SALESFORCE_STATE_ID = 1  # the row the migration inserts


@dataclass(frozen=True)
class SalesforceStatus:
    connected: bool | None  # None: never tried
    last_error: str | None  # in Salesforce's words
    last_error_at: datetime | None
    last_success_at: datetime | None
    failures: int  # temporary failures in a row: the back-off's exponent
    retry_at: datetime | None  # the outbox waits until then after a temporary failure


class SalesforceStateRepository(Repository):
    def status(self) -> SalesforceStatus:
        with self._reading() as session:
            row = session.get(SalesforceState, SALESFORCE_STATE_ID)
            if row is None:
                return SalesforceStatus(None, None, None, None, 0, None)
            return SalesforceStatus(row.connected, row.last_error, as_utc(row.last_error_at),
                                    as_utc(row.last_success_at), row.failures or 0, as_utc(row.retry_at))

    def record_success(self) -> None:
        self._update(connected=True, last_success_at=utcnow(), failures=0, retry_at=None)

    def record_failure(self, message: str, *, retry_at: datetime | None, failures: int) -> None:
        self._update(connected=False, last_error=message[:4000], last_error_at=utcnow(), failures=failures,
                     retry_at=retry_at)

    def _update(self, **values) -> None:
        with self._writing() as session:
            session.execute(update(SalesforceState).where(SalesforceState.id == SALESFORCE_STATE_ID).values(**values))
