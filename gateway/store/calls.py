"""Marketo calls counted per quota day and kind: what the gate's call budget (gateway/budget.py) reads and takes."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import update
from sqlalchemy.orm import Session

from gateway.store.models import MarketoCalls
from gateway.store.repository import Repository

CALL_KINDS = ("token", "lookup", "sync")
# Marketo's quota counts REST calls; the identity endpoint is free.
QUOTA_KINDS = ("lookup", "sync")


@dataclass(frozen=True)
class CallCounts:
    day: date
    used: int = 0
    token: int = 0
    lookup: int = 0
    sync: int = 0
    unanswered: int = 0  # no answer or a 5xx: not in `used` nor in their kind's count


class CallsRepository(Repository):
    def take(self, day: date, kind: str, cap: int | None) -> bool:
        """Count one call of `kind` on `day`; for quota kinds only while fewer than `cap` of that kind were
        made, so one kind cannot spend another's share. Atomic."""
        with self._writing() as session:
            if session.get(MarketoCalls, day) is None:
                _insert_day(session, day)
            statement = update(MarketoCalls).where(MarketoCalls.day == day)
            counter = getattr(MarketoCalls, kind)
            if kind in QUOTA_KINDS:
                statement = statement.values({counter: counter + 1, MarketoCalls.used: MarketoCalls.used + 1})
                if cap is not None:
                    statement = statement.where(counter < cap)
            else:
                statement = statement.values({counter: counter + 1})
            return session.execute(statement).rowcount == 1

    def give_back(self, day: date, kind: str) -> None:
        """A call of `kind` got no answer or a 5xx: it leaves `used` and its kind's count for `unanswered`."""
        with self._writing() as session:
            if session.get(MarketoCalls, day) is None:
                _insert_day(session, day)
            this_day = update(MarketoCalls).where(MarketoCalls.day == day)
            session.execute(this_day.values({MarketoCalls.unanswered: MarketoCalls.unanswered + 1}))
            if kind in QUOTA_KINDS:
                counter = getattr(MarketoCalls, kind)
                # Taken before midnight, failed after: that day's count has nothing to give back.
                session.execute(this_day.where(counter > 0).values({counter: counter - 1, MarketoCalls.used: MarketoCalls.used - 1}))

    def counts(self, day: date) -> CallCounts:
        with self._reading() as session:
            row = session.get(MarketoCalls, day)
            if row is None:
                return CallCounts(day)
            return CallCounts(day, row.used, row.token, row.lookup, row.sync, row.unanswered)


def _insert_day(session: Session, day: date) -> None:
    # Two processes may both find the day missing; the loser's insert must not fail its call.
    dialect = session.get_bind().dialect.name
    row = {"day": day, "used": 0, "token": 0, "lookup": 0, "sync": 0, "unanswered": 0}
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    session.execute(dialect_insert(MarketoCalls).values(row).on_conflict_do_nothing(index_elements=["day"]))
