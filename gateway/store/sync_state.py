"""Where the mirror's load and sync stand (the one sync_state row), and the lease that lets one worker write."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from gateway.store.common import as_utc, utcnow
from gateway.store.models import SyncState
from gateway.store.repository import Repository

SYNC_ID = 1  # the row the mirror's migration inserts


class LeaseLost(Exception):
    """Another worker holds the sync lease now: this one must stop writing."""


@dataclass(frozen=True)
class SyncStatus:
    load_status: str  # not_started, loading, complete
    load_started_at: datetime | None
    load_window_start: datetime | None
    load_export_id: str | None
    load_finished_at: datetime | None
    changes_token: str | None
    last_success_at: datetime | None
    last_attempt_at: datetime | None
    last_error: str | None
    lease_owner: str | None
    lease_until: datetime | None
    load_plan: list | None = None  # the load's export jobs (see gateway.mirror.LoadPlan)
    load_source: str | None = None


class SyncStateRepository(Repository):
    def status(self, *, session: Session | None = None) -> SyncStatus:
        with self._reading(session) as session:
            return _sync_status(session.get(SyncState, SYNC_ID))

    def acquire_lease(self, owner: str, seconds: float) -> bool:
        """Take the lease when it is free, expired or already `owner`'s; False when another worker holds it."""
        now = utcnow()
        with self._writing() as session:
            result = session.execute(
                update(SyncState)
                .where(SyncState.id == SYNC_ID)
                .where((SyncState.lease_owner.is_(None)) | (SyncState.lease_until < now) | (SyncState.lease_owner == owner))
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=seconds))
            )
            return result.rowcount == 1

    def renew_lease(self, owner: str, seconds: float) -> None:
        with self._writing() as session:
            write_while_leased(session, owner, {"lease_until": utcnow() + timedelta(seconds=seconds)})

    def release_lease(self, owner: str) -> None:
        with self._writing() as session:
            session.execute(
                update(SyncState).where(SyncState.id == SYNC_ID, SyncState.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    def update(self, owner: str, **values) -> None:
        """Write `values` to the sync state; raises LeaseLost unless `owner` holds the lease."""
        with self._writing() as session:
            write_while_leased(session, owner, values)

    def reset(self, *, session: Session | None = None) -> None:
        """Back to a sync that never ran, lease released. See `Store.reset_mirror` to forget the rows too."""
        with self._writing(session) as session:
            session.execute(
                update(SyncState).where(SyncState.id == SYNC_ID).values(
                    load_status="not_started", load_started_at=None, load_window_start=None, load_export_id=None,
                    load_finished_at=None, load_plan=None, load_source=None, changes_token=None, last_success_at=None, last_attempt_at=None,
                    last_error=None, lease_owner=None, lease_until=None,
                )
            )


def write_while_leased(session: Session, owner: str, values: dict) -> None:
    """The fence of every sync write: update the sync state only while `owner` holds the lease."""
    result = session.execute(
        update(SyncState).where(SyncState.id == SYNC_ID, SyncState.lease_owner == owner)
        .values(lease_owner=owner, **values)
    )
    if result.rowcount != 1:
        raise LeaseLost(f"sync lease is no longer held by {owner}")


def _sync_status(row: SyncState) -> SyncStatus:
    return SyncStatus(
        load_status=row.load_status,
        load_started_at=as_utc(row.load_started_at),
        load_window_start=as_utc(row.load_window_start),
        load_export_id=row.load_export_id,
        load_finished_at=as_utc(row.load_finished_at),
        changes_token=row.changes_token,
        last_success_at=as_utc(row.last_success_at),
        last_attempt_at=as_utc(row.last_attempt_at),
        last_error=row.last_error,
        lease_owner=row.lease_owner,
        lease_until=as_utc(row.lease_until),
        load_plan=row.load_plan,
        load_source=row.load_source,
    )
