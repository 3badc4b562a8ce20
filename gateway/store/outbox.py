"""The Salesforce outbox: Tasks and opt-outs the gate owes Salesforce, written with what caused them.

A row is written in the transaction of the blocked-send row (a Task) or of the mirror row (an opt-out),
so neither exists without the other. The worker claims rows (`sending`, an attempt id, a claim end),
hands them to Salesforce and marks each one with the answer. A claim that ended without an answer (the
worker died, or the answer was lost) is reconciled by gateway/salesforce/outbox.py before it is sent again.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from gateway.store.common import as_utc, in_chunks, storable_text, utcnow
from gateway.store.models import SalesforceOutboxEntry as Row
from gateway.store.repository import Repository

TASK = "task"
OPT_OUT = "opt_out"
PENDING, SENDING, SENT, SKIPPED, FAILED = "pending", "sending", "sent", "skipped", "failed"
RECENT_FAILURES = 10


@dataclass(frozen=True)
class OutboxTask:
    """A blocked recipient to log as a Task, as the check produces it."""

    check_id: str
    source: str
    workflow: str
    sender: str | None
    recipient: str
    reason_code: str
    message_id: str | None
    owner_id: str | None  # the sending Salesforce user (005…), when the callout named one


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    kind: str
    status: str
    created_at: datetime
    marker: str
    recipient: str
    check_id: str | None
    source: str | None
    workflow: str | None
    sender: str | None
    reason_code: str | None
    message_id: str | None
    owner_id: str | None
    attempt_id: str | None
    claimed_at: datetime | None
    claimed_until: datetime | None
    who_id: str | None
    task_id: str | None
    error: str | None
    done_at: datetime | None


@dataclass(frozen=True)
class OutboxSummary:
    pending: int  # waiting or being sent: the outbox's depth
    oldest_pending_at: datetime | None
    tasks_created: int
    skipped_no_match: int  # no Contact or unconverted Lead has the address
    failed: int
    opt_outs_written: int
    recent_failures: tuple[OutboxEntry, ...]


_FIELDS = [f.name for f in fields(OutboxEntry)]


def _entry(row: Row) -> OutboxEntry:
    values = {name: getattr(row, name) for name in _FIELDS}
    for name in ("created_at", "claimed_at", "claimed_until", "done_at"):
        values[name] = as_utc(values[name])
    return OutboxEntry(**values)


def _held_row(attempt_id: str):
    """UPDATE of one row (bound as v_id, for executemany) that `attempt_id` still holds."""
    table = Row.__table__
    return update(table).where(table.c.id == bindparam("v_id"), table.c.attempt_id == attempt_id,
                               table.c.status == SENDING)


def new_marker() -> str:
    return uuid.uuid4().hex


class OutboxRepository(Repository):
    def add_tasks(self, tasks: Sequence[OutboxTask], *, session: Session | None = None) -> None:
        if not tasks:
            return
        now = utcnow()
        rows = [{"kind": TASK, "status": PENDING, "created_at": now, "marker": new_marker(),
                 **{k: storable_text(getattr(t, k)) for k in (f.name for f in fields(OutboxTask))}} for t in tasks]
        with self._writing(session) as session:
            session.execute(insert(Row), rows)

    def add_opt_outs(self, emails: Sequence[str], *, session: Session | None = None) -> None:
        if not emails:
            return
        now = utcnow()
        rows = [{"kind": OPT_OUT, "status": PENDING, "created_at": now, "marker": new_marker(), "recipient": email}
                for email in dict.fromkeys(emails)]
        with self._writing(session) as session:
            session.execute(insert(Row), rows)

    def claim(self, kind: str, limit: int, attempt_id: str, until: datetime) -> list[OutboxEntry]:
        """Up to `limit` pending rows of `kind`, oldest first, now `sending` under `attempt_id` until `until`.

        The update re-checks `status = pending`, so two drains never claim the same row.
        """
        now = utcnow()
        with self._writing() as session:
            ids = list(session.scalars(
                select(Row.id).where(Row.kind == kind, Row.status == PENDING).order_by(Row.id).limit(limit)))
            if not ids:
                return []
            session.execute(update(Row).where(Row.id.in_(ids), Row.status == PENDING).values(
                status=SENDING, attempt_id=attempt_id, claimed_at=now, claimed_until=until))
        return self.claimed(attempt_id)

    def claimed(self, attempt_id: str) -> list[OutboxEntry]:
        with self._reading() as session:
            rows = session.scalars(select(Row).where(Row.attempt_id == attempt_id, Row.status == SENDING).order_by(Row.id))
            return [_entry(row) for row in rows]

    def expired_claims(self, kind: str, limit: int, now: datetime | None = None) -> list[OutboxEntry]:
        """Rows left `sending` past their claim: their drain died or lost Salesforce's answer."""
        now = now or utcnow()
        with self._reading() as session:
            rows = session.scalars(select(Row).where(Row.kind == kind, Row.status == SENDING, Row.claimed_until < now)
                                   .order_by(Row.id).limit(limit))
            return [_entry(row) for row in rows]

    def take_over(self, ids: Sequence[int], attempt_id: str, until: datetime) -> list[OutboxEntry]:
        """Claim expired `sending` rows for a new attempt (only those still expired: one drain wins)."""
        now = utcnow()
        with self._writing() as session:
            for chunk in in_chunks(list(ids)):
                session.execute(update(Row).where(Row.id.in_(chunk), Row.status == SENDING, Row.claimed_until < now)
                                .values(attempt_id=attempt_id, claimed_at=now, claimed_until=until))
        return self.claimed(attempt_id)

    def set_who(self, attempt_id: str, who_ids: Mapping[int, str]) -> None:
        """Written before the Tasks are sent, so a later reconciliation knows which records to look under."""
        if not who_ids:
            return
        with self._writing() as session:
            session.execute(_held_row(attempt_id).values(who_id=bindparam("v_who")),
                            [{"v_id": entry_id, "v_who": who_id} for entry_id, who_id in who_ids.items()])

    def finish(self, attempt_id: str, *, sent: Mapping[int, str | None] = {}, failed: Mapping[int, str] = {},
               skipped: Sequence[int] = ()) -> None:
        """Record Salesforce's answers for rows this attempt still holds: sent (Task id), failed (message), skipped."""
        now = utcnow()
        with self._writing() as session:
            if sent:
                session.execute(
                    _held_row(attempt_id).values(status=SENT, task_id=bindparam("v_task"), done_at=now, error=None),
                    [{"v_id": entry_id, "v_task": task_id} for entry_id, task_id in sent.items()])
            if failed:
                session.execute(
                    _held_row(attempt_id).values(status=FAILED, error=bindparam("v_error"), done_at=now),
                    [{"v_id": entry_id, "v_error": message[:4000]} for entry_id, message in failed.items()])
            if skipped:
                session.execute(_held_row(attempt_id).values(status=SKIPPED, done_at=now),
                                [{"v_id": entry_id} for entry_id in skipped])

    def release(self, attempt_id: str, ids: Sequence[int] | None = None) -> None:
        """Back to pending: nothing of this attempt reached Salesforce (or it is known not to have)."""
        query = update(Row).where(Row.attempt_id == attempt_id, Row.status == SENDING)
        if ids is not None:
            query = query.where(Row.id.in_(list(ids)))
        with self._writing() as session:
            session.execute(query.values(status=PENDING, attempt_id=None, claimed_until=None))

    def extend(self, attempt_id: str, until: datetime) -> None:
        with self._writing() as session:
            session.execute(update(Row).where(Row.attempt_id == attempt_id, Row.status == SENDING)
                            .values(claimed_until=until))

    def entries(self, *, kind: str | None = None, status: str | None = None) -> list[OutboxEntry]:
        query = select(Row).order_by(Row.id)
        if kind is not None:
            query = query.where(Row.kind == kind)
        if status is not None:
            query = query.where(Row.status == status)
        with self._reading() as session:
            return [_entry(row) for row in session.scalars(query)]

    def depth(self) -> int:
        """Entries not yet through: pending, or claimed by a drain that has not finished."""
        with self._reading() as session:
            return session.scalar(select(func.count()).select_from(Row).where(Row.status.in_((PENDING, SENDING)))) or 0

    def summary(self) -> OutboxSummary:
        with self._reading() as session:
            counts = {(kind, status): n for kind, status, n in session.execute(
                select(Row.kind, Row.status, func.count()).group_by(Row.kind, Row.status))}
            oldest = session.scalar(select(func.min(Row.created_at)).where(Row.status.in_((PENDING, SENDING))))
            failures = session.scalars(select(Row).where(Row.status == FAILED).order_by(Row.id.desc())
                                       .limit(RECENT_FAILURES))
            recent = tuple(_entry(row) for row in failures)
        pending = sum(n for (_kind, status), n in counts.items() if status in (PENDING, SENDING))
        return OutboxSummary(
            pending=pending,
            oldest_pending_at=as_utc(oldest),
            tasks_created=counts.get((TASK, SENT), 0),
            skipped_no_match=counts.get((TASK, SKIPPED), 0),
            failed=sum(n for (_kind, status), n in counts.items() if status == FAILED),
            opt_outs_written=counts.get((OPT_OUT, SENT), 0),
            recent_failures=recent,
        )
