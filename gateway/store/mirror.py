"""The mirror of Marketo's unsubscribed addresses: read by every check, written by the sync lease's holder and,
for the unsubscribes Marketo pushes, by the web process that receives them."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, or_, select, true
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from gateway.store.common import in_chunks, utcnow
from gateway.store.models import MirrorUnsubscribe
from gateway.store.repository import Repository
from gateway.store.sync_state import write_while_leased


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
        now = utcnow()
        with self._writing(session) as session:
            write_while_leased(session, owner, state or {})
            for chunk in in_chunks(subscribed):
                session.execute(delete(MirrorUnsubscribe).where(
                    MirrorUnsubscribe.email.in_(chunk), _not_pushed_since(looked_up_at)))
            for chunk in in_chunks(unsubscribed):
                # ON CONFLICT: a row already there, or one a push (any web process) inserts meanwhile, stays.
                new = [{"email": email, "changed_at": now} for email in dict.fromkeys(chunk)]
                session.execute(_insert_for(session).on_conflict_do_nothing(index_elements=["email"]), new)

    # pushes from Marketo (POST /v1/hooks/marketo): written by any web process, no lease needed
    def push_unsubscribe(self, email: str) -> None:
        """Marketo said this address unsubscribed: one row, written at once, whoever holds the sync lease."""
        now = utcnow()
        with self._writing() as session:
            upsert = _insert_for(session).values(email=email, changed_at=now, pushed_at=now)
            session.execute(upsert.on_conflict_do_update(index_elements=["email"], set_={"pushed_at": now}))

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
            result = session.execute(delete(MirrorUnsubscribe).where(
                MirrorUnsubscribe.email == email, _not_pushed_since(looked_up_at)))
            return result.rowcount > 0

    def clear(self, *, session: Session | None = None) -> None:
        with self._writing(session) as session:
            session.execute(delete(MirrorUnsubscribe))


def _not_pushed_since(moment: datetime | None):
    if moment is None:
        return true()
    return or_(MirrorUnsubscribe.pushed_at.is_(None), MirrorUnsubscribe.pushed_at < moment)


def _insert_for(session: Session):
    """INSERT … ON CONFLICT, which SQLite and PostgreSQL spell alike but SQLAlchemy builds per dialect."""
    return (postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)(MirrorUnsubscribe)
