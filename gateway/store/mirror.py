"""The mirror of Marketo's unsubscribed addresses: read by every check, written by the sync lease's holder and,
for the unsubscribes Marketo pushes, by the web process that receives them.

Every write goes through `write_mirror_rows` (as `apply_changes` and the pushes do) or `clear`, which number it
in the mirror's change sequence (`sync_state.mirror_version`) in the same transaction, so an in-process view
(gateway/mirror_view.py) can ask what changed since the last number it saw. A write that bypassed them
would be invisible to the views.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from gateway.store.common import in_chunks, utcnow
from gateway.store.models import MirrorRemoval, MirrorUnsubscribe, SyncState
from gateway.store.repository import Repository
from gateway.store.sync_state import SYNC_ID, write_while_leased

SNAPSHOT_BATCH = 10_000  # rows fetched at a time when a view reads the whole mirror


@dataclass(frozen=True)
class MirrorVersion:
    version: int  # the last mirror write
    reset_version: int  # the last clear or removals pruned: a view older than this must be rebuilt


@dataclass(frozen=True)
class MirrorChanges:
    version: int  # the changes are complete up to this write (and may include later ones)
    added: frozenset[str]
    removed: frozenset[str]  # taken out and not back in


class MirrorRepository(Repository):
    def unsubscribed_among(self, emails: Sequence[str]) -> set[str]:
        found: set[str] = set()
        with self._reading() as session:
            for chunk in in_chunks(emails):
                found.update(session.scalars(select(MirrorUnsubscribe.email).where(MirrorUnsubscribe.email.in_(chunk))))
        return found

    def size(self) -> int:
        with self._reading() as session:
            return session.scalar(select(func.count()).select_from(MirrorUnsubscribe))

    def apply_changes(self, owner: str, *, unsubscribed: Sequence[str] = (), subscribed: Sequence[str] = (),
                      state: dict | None = None, looked_up_at: datetime | None = None,
                      session: Session | None = None) -> None:
        """Mirror rows and the sync position (`state`) move together, and only while `owner` holds the lease.

        `looked_up_at`: when Marketo was asked about `subscribed`; an unsubscribe pushed since then is newer
        than that answer, so its row stays.
        """
        with self._writing(session) as session:
            write_while_leased(session, owner, state or {})
            write_mirror_rows(session, unsubscribed=unsubscribed, subscribed=subscribed, looked_up_at=looked_up_at)

    # pushes from Marketo (POST /v1/hooks/marketo): written by any web process, no lease needed
    def push_unsubscribe(self, email: str) -> None:
        """Marketo said this address unsubscribed: one row, written at once, whoever holds the sync lease."""
        with self._writing() as session:
            write_mirror_rows(session, unsubscribed=[email], pushed_at=utcnow())

    def pushed_among(self, emails: Sequence[str]) -> set[str]:
        """Addresses among these that Marketo pushed as unsubscribed: they are denied even while the mirror is stale."""
        found: set[str] = set()
        with self._reading() as session:
            for chunk in in_chunks(emails):
                found.update(session.scalars(select(MirrorUnsubscribe.email).where(
                    MirrorUnsubscribe.email.in_(chunk), MirrorUnsubscribe.pushed_at.is_not(None))))
        return found

    def forget_resubscribed(self, email: str, looked_up_at: datetime) -> bool:
        """Marketo, asked at `looked_up_at`, holds this address as subscribed: drop its row unless pushed since."""
        with self._writing() as session:
            return write_mirror_rows(session, subscribed=[email], looked_up_at=looked_up_at) > 0

    def clear(self, *, session: Session | None = None) -> None:
        with self._writing(session) as session:
            session.execute(delete(MirrorUnsubscribe))
            session.execute(delete(MirrorRemoval))  # every view rebuilds after a reset: the removals are moot
            version = next_mirror_version(session)
            session.execute(update(SyncState).where(SyncState.id == SYNC_ID).values(mirror_reset_version=version))

    def prune_removals(self, keep: int) -> int:
        """Drop all but about the newest `keep` removal rows; a view older than what is dropped rebuilds.

        Views follow the sequence every second, so only a view that fell far behind (a process stopped for
        a long while) needs a dropped row; raising `mirror_reset_version` to the newest dropped version makes
        it rebuild, as after a clear. Returns how many rows were dropped."""
        with self._writing() as session:
            newest_dropped = session.scalar(
                select(MirrorRemoval.version).order_by(MirrorRemoval.version.desc()).offset(keep).limit(1))
            if newest_dropped is None:
                return 0
            dropped = session.execute(delete(MirrorRemoval).where(MirrorRemoval.version <= newest_dropped)).rowcount
            session.execute(update(SyncState).where(SyncState.id == SYNC_ID,
                                                    SyncState.mirror_reset_version < newest_dropped)
                            .values(mirror_reset_version=newest_dropped))
            return dropped

    # What in-process views read ---------------------------------------------------------------------------

    def version(self) -> MirrorVersion:
        with self._reading() as session:
            row = session.execute(select(SyncState.mirror_version, SyncState.mirror_reset_version)
                                  .where(SyncState.id == SYNC_ID)).one()
        return MirrorVersion(row.mirror_version, row.mirror_reset_version)

    def changes_since(self, version: int) -> MirrorChanges:
        with self._reading() as session:
            # The number first: rows written after it are read too, and read again next time (views apply
            # changes idempotently); reading it last could skip a write committed in between.
            current = session.scalar(select(SyncState.mirror_version).where(SyncState.id == SYNC_ID))
            added = frozenset(session.scalars(
                select(MirrorUnsubscribe.email).where(MirrorUnsubscribe.version > version)))
            removed = frozenset(session.scalars(select(MirrorRemoval.email).where(MirrorRemoval.version > version)))
        return MirrorChanges(current, added, removed - added)

    def snapshot(self) -> tuple[int, Iterator[str]]:
        """The current version and every address, streamed: changes after that version may be included."""
        version = self.version().version

        def rows() -> Iterator[str]:
            with self._reading() as session:
                result = session.execute(select(MirrorUnsubscribe.email).execution_options(yield_per=SNAPSHOT_BATCH))
                for (email,) in result:
                    yield email

        return version, rows()


def write_mirror_rows(session: Session, *, unsubscribed: Sequence[str] = (), subscribed: Sequence[str] = (),
                      looked_up_at: datetime | None = None, pushed_at: datetime | None = None) -> int:
    """Add and remove mirror rows as one numbered change: the one way rows get in or out, whoever writes.

    A row pushed after `looked_up_at` stays (Marketo's answer is older than the push); `pushed_at` marks the
    rows as pushed. Returns how many rows were taken out.
    """
    if not unsubscribed and not subscribed:
        return 0
    version = next_mirror_version(session)
    now = utcnow()
    removed = 0
    for chunk in in_chunks(subscribed):
        gone = list(session.scalars(delete(MirrorUnsubscribe)
                                    .where(MirrorUnsubscribe.email.in_(chunk), _not_pushed_since(looked_up_at))
                                    .returning(MirrorUnsubscribe.email)))
        if gone:
            session.execute(insert(MirrorRemoval), [{"version": version, "email": email} for email in gone])
            removed += len(gone)
    for chunk in in_chunks(unsubscribed):
        # ON CONFLICT: a row already there (in every view already), or one another process inserts meanwhile,
        # stays; a push marks it pushed.
        new = [{"email": email, "changed_at": now, "version": version, "pushed_at": pushed_at}
               for email in dict.fromkeys(chunk)]
        upsert = _insert_for(session)
        if pushed_at is None:
            upsert = upsert.on_conflict_do_nothing(index_elements=["email"])
        else:
            upsert = upsert.on_conflict_do_update(index_elements=["email"], set_={"pushed_at": pushed_at})
        session.execute(upsert, new)
    return removed


def next_mirror_version(session: Session) -> int:
    """Number a mirror write. The row lock this takes holds other writers until commit, so numbers commit in order."""
    session.execute(update(SyncState).where(SyncState.id == SYNC_ID)
                    .values(mirror_version=SyncState.mirror_version + 1))
    return session.scalar(select(SyncState.mirror_version).where(SyncState.id == SYNC_ID))


def _not_pushed_since(moment: datetime | None):
    if moment is None:
        return true()
    return or_(MirrorUnsubscribe.pushed_at.is_(None), MirrorUnsubscribe.pushed_at < moment)


def _insert_for(session: Session):
    """INSERT … ON CONFLICT, which SQLite and PostgreSQL spell alike but SQLAlchemy builds per dialect."""
    return (postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)(MirrorUnsubscribe)
