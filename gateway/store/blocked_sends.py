"""The log of blocked sends: one row per recipient kept from one message, written with the check that kept it."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta, timezone

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


@dataclass(frozen=True)
class BlockedSendFilter:
    """What the admin narrows the log to; every field left None matches all rows.

    `recipient` and `sender` match any part of the address, ignoring case; `since` and `until` are UTC days,
    both included.
    """

    recipient: str | None = None
    sender: str | None = None
    source: str | None = None
    workflow: str | None = None
    since: date | None = None
    until: date | None = None

    def apply(self, query):
        if self.recipient:
            query = query.where(BlockedSend.recipient.ilike(_containing(self.recipient), escape="\\"))
        if self.sender:
            query = query.where(BlockedSend.sender.ilike(_containing(self.sender), escape="\\"))
        if self.source:
            query = query.where(BlockedSend.source == self.source)
        if self.workflow:
            query = query.where(BlockedSend.workflow == self.workflow)
        if self.since:
            query = query.where(BlockedSend.at >= _day_start(self.since))
        if self.until:
            query = query.where(BlockedSend.at < _day_start(self.until) + timedelta(days=1))
        return query


NO_FILTER = BlockedSendFilter()


def _containing(text: str) -> str:
    """A LIKE pattern for `text` anywhere, its own % and _ taken literally."""
    escaped = storable_text(text.strip().lower()).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


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

    def page(self, *, limit: int, before_id: int | None = None,
             where: BlockedSendFilter = NO_FILTER) -> list[LoggedBlockedSend]:
        """Newest first; `before_id` is the cursor: the id of the last row of the previous page."""
        query = where.apply(select(BlockedSend).order_by(BlockedSend.id.desc()).limit(limit))
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

    def iterate(self, *, before_id: int | None = None, chunk: int = 1000,
                where: BlockedSendFilter = NO_FILTER) -> Iterator[LoggedBlockedSend]:
        """Every row from the cursor on, newest first, read `chunk` rows at a time."""
        while True:
            rows = self.page(limit=chunk, before_id=before_id, where=where)
            yield from rows
            if len(rows) < chunk:
                return
            before_id = rows[-1].id

    def per_day_by_reason(self, since: date, *, where: BlockedSendFilter = NO_FILTER) -> dict[date, dict[str, int]]:
        """Rows per UTC day from `since` on, by reason code: what the console's chart draws."""
        counts: dict[date, dict[str, int]] = {}
        with self._reading() as session:
            day = _utc_day(session.get_bind().dialect.name)
            query = where.apply(
                select(day, BlockedSend.reason_code, func.count())
                .where(BlockedSend.at >= _day_start(since))
                .group_by(day, BlockedSend.reason_code)
            )
            for value, reason, count in session.execute(query):
                key = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
                counts.setdefault(key, {})[reason] = count
        return counts


def _utc_day(dialect: str):
    """The UTC day of a row: PostgreSQL would otherwise take the day in the session's time zone."""
    if dialect == "postgresql":
        return func.date(func.timezone("UTC", BlockedSend.at))
    return func.date(BlockedSend.at)  # SQLite keeps the UTC time the gate wrote, as text


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
