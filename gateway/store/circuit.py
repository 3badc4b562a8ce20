"""Marketo's circuit breaker as the whole app sees it: open or closed, and when the next probe is due.

The one `marketo_circuit` row is what makes the breaker app-wide (gateway/marketo/breaker.py): a process
that sees Marketo fail opens it for every process, a probe is claimed by one process at a time with a
conditional update (so the app sends at most one probe per probe interval, however many processes ask),
and an answered call closes it for all. Times are the breaker's clock: seconds since the epoch.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway.store.common import as_utc
from gateway.store.models import MarketoCircuit
from gateway.store.repository import Repository

CIRCUIT_ID = 1


@dataclass(frozen=True)
class CircuitState:
    is_open: bool
    opened_at: datetime | None
    next_probe_at: datetime | None
    opened_total: int
    probes_total: int


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def _epoch(moment: datetime | None) -> float | None:
    return as_utc(moment).timestamp() if moment is not None else None


class CircuitRepository(Repository):
    def state(self) -> CircuitState:
        with self._reading() as session:
            row = session.get(MarketoCircuit, CIRCUIT_ID)
            return CircuitState(row.is_open, as_utc(row.opened_at), as_utc(row.next_probe_at),
                                row.opened_total, row.probes_total)

    # The breaker's side (gateway.marketo.breaker.SharedCircuit), in epoch seconds.

    def next_probe_at(self, *, session: Session | None = None) -> float | None:
        """None while closed; else when the next probe is due."""
        with self._reading(session) as session:
            row = session.execute(
                select(MarketoCircuit.is_open, MarketoCircuit.next_probe_at).where(MarketoCircuit.id == CIRCUIT_ID)
            ).one()
            return _epoch(row.next_probe_at) if row.is_open else None

    def trip(self, now: float, next_probe_at: float) -> float:
        """Open the circuit unless it is open already; the next probe time that stands (ours or the opener's)."""
        with self._writing() as session:
            session.execute(
                update(MarketoCircuit).where(MarketoCircuit.id == CIRCUIT_ID, MarketoCircuit.is_open.is_(False))
                .values(is_open=True, opened_at=_moment(now), next_probe_at=_moment(next_probe_at),
                        opened_total=MarketoCircuit.opened_total + 1)
            )
            standing = self.next_probe_at(session=session)  # in the same transaction: no close can slip between
        return standing if standing is not None else next_probe_at

    def claim_probe(self, now: float, next_probe_at: float) -> bool:
        """True for exactly one claimant once the probe is due: it sends the probe, the others wait for the next."""
        with self._writing() as session:
            claimed = session.execute(
                update(MarketoCircuit)
                .where(MarketoCircuit.id == CIRCUIT_ID, MarketoCircuit.is_open.is_(True),
                       MarketoCircuit.next_probe_at <= _moment(now))
                .values(next_probe_at=_moment(next_probe_at), probes_total=MarketoCircuit.probes_total + 1)
            )
            return claimed.rowcount == 1

    def close(self) -> bool:
        """Close the circuit for every process; False when it was closed already."""
        with self._writing() as session:
            closed = session.execute(
                update(MarketoCircuit).where(MarketoCircuit.id == CIRCUIT_ID, MarketoCircuit.is_open.is_(True))
                .values(is_open=False, next_probe_at=None)
            )
            return closed.rowcount == 1
