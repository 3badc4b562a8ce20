"""The log of blocked sends: one row per recipient kept from one message, written with the check that kept it."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from gateway.store.common import as_utc, storable_text, utcnow
from gateway.store.models import BlockedSend
from gateway.store.repository import Repository


@dataclass(frozen=True)
class BlockedSendEntry:
    """A row to log, as a check produces it."""

    check_id: str
    source: str
    workflow: str
    sender: str | None
    recipient: str
    reason_code: str
    message_id: str | None


@dataclass(frozen=True)
class LoggedBlockedSend:
    """A row of the log as read back: `id` orders it and is the pages' cursor."""

    id: int
    at: datetime
    check_id: str
    source: str
    workflow: str
    sender: str | None
    recipient: str
    reason_code: str
    message_id: str | None


class BlockedSendsRepository(Repository):
    def log(self, entries: Sequence[BlockedSendEntry], at: datetime | None = None, *,
            session: Session | None = None) -> None:
        """All rows of one check in one transaction: the log holds a check's blocks entirely or not at all."""
        if not entries:
            return
        at = at or utcnow()
        rows = [{"at": at, **{k: storable_text(v) for k, v in asdict(entry).items()}} for entry in entries]
        with self._writing(session) as session:
            session.execute(insert(BlockedSend), rows)

    def page(self, *, limit: int, before_id: int | None = None) -> list[LoggedBlockedSend]:
        """Newest first; `before_id` is the cursor: the id of the last row of the previous page."""
        query = select(BlockedSend).order_by(BlockedSend.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(BlockedSend.id < before_id)
        with self._reading() as session:
            return [_logged(row) for row in session.scalars(query)]

    def count(self, *, workflow: str | None = None) -> int:
        query = select(func.count()).select_from(BlockedSend)
        if workflow is not None:
            query = query.where(BlockedSend.workflow == workflow)
        with self._reading() as session:
            return session.scalar(query) or 0

    def iterate(self, *, before_id: int | None = None, chunk: int = 1000) -> Iterator[LoggedBlockedSend]:
        """Every row from the cursor on, newest first, read `chunk` rows at a time."""
        while True:
            rows = self.page(limit=chunk, before_id=before_id)
            yield from rows
            if len(rows) < chunk:
                return
            before_id = rows[-1].id


def _logged(row: BlockedSend) -> LoggedBlockedSend:
    return LoggedBlockedSend(
        id=row.id,
        at=as_utc(row.at),
        check_id=row.check_id,
        source=row.source,
        workflow=row.workflow,
        sender=row.sender,
        recipient=row.recipient,
        reason_code=row.reason_code,
        message_id=row.message_id,
    )
