"""The mirror of Marketo's unsubscribed addresses: read by every check, written only by the sync lease's holder."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, insert, select
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
                      state: dict | None = None, session: Session | None = None) -> None:
        """Mirror rows and the sync position (`state`) move together, and only while `owner` holds the lease."""
        now = utcnow()
        with self._writing(session) as session:
            write_while_leased(session, owner, state or {})
            for chunk in in_chunks(subscribed):
                session.execute(delete(MirrorUnsubscribe).where(MirrorUnsubscribe.email.in_(chunk)))
            for chunk in in_chunks(unsubscribed):
                addresses = list(dict.fromkeys(chunk))
                present = set(session.scalars(
                    select(MirrorUnsubscribe.email).where(MirrorUnsubscribe.email.in_(addresses))))
                new = [{"email": email, "changed_at": now} for email in addresses if email not in present]
                if new:
                    session.execute(insert(MirrorUnsubscribe), new)

    def clear(self, *, session: Session | None = None) -> None:
        with self._writing(session) as session:
            session.execute(delete(MirrorUnsubscribe))
