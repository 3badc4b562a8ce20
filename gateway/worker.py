"""The worker process: keeps the mirror in sync, paced so the sync's share of the call budget lasts the day.

No fault ends the loop. Each step of a round (the sync, the pruning, ...) runs guarded: a database,
Marketo or any other error is logged and the round is tried again after a back-off that doubles from
FIRST_RETRY up to GATEWAY_SYNC_INTERVAL, so the mirror is fresh again within that long of the fault ending.
While Marketo's circuit breaker is open, the next try is the app's next probe, or the moment another
process's probe is answered.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from gateway import Gate
from gateway.events import emit
from gateway.lease import LeaseKeeper
from gateway.marketo import MarketoError
from gateway.marketo.breaker import CircuitBreaker
from gateway.mirror import MirrorSync
from gateway.salesforce.outbox import drain_outbox
from gateway.store import DELIVERY_RETENTION, utcnow
from gateway.switch import watch_switch

log = logging.getLogger(__name__)

FIRST_RETRY = 1.0  # seconds before the first retry of a failed round; doubles up to the sync interval
# Re-subscribes kept for the web processes' views to follow (gateway/mirror_view.py): a view a second behind
# needs the last second's, far fewer than this; one further behind rebuilds.
REMOVALS_KEPT = 10_000


class Backoff:
    """Seconds to wait before the next try: FIRST_RETRY, doubling, at most `longest`; back to the start on success."""

    def __init__(self, longest: float, first: float = FIRST_RETRY):
        self.first = min(first, longest)
        self.longest = longest
        self.failures = 0

    def next(self) -> float:
        self.failures += 1
        return min(self.first * 2 ** (self.failures - 1), self.longest)

    def reset(self) -> None:
        self.failures = 0


def mirror_sync_for(gate: Gate, stop: threading.Event, owner: str | None = None, keep_lease: bool = False) -> MirrorSync:
    config = gate.config
    return MirrorSync(
        gate.store,
        gate.marketo,
        load_from=config.mirror_load_from,
        export_poll_seconds=config.export_poll_seconds,
        lease_seconds=config.sync_lease_seconds,
        owner=owner,
        stop=stop,
        export_jobs=config.export_jobs,
        smart_list=config.mirror_smart_list,
        static_list=config.mirror_static_list,
        keep_lease=keep_lease,
        opt_out_writeback=config.salesforce_configured and config.salesforce_opt_out_writeback,
        load_mode=config.mirror_load_mode,
        calls_left=gate.budget.sync_calls_left,
    )


def run_worker(gate: Gate, stop: threading.Event, owner: str | None = None) -> None:
    """Sync every `GATEWAY_SYNC_INTERVAL` seconds (longer when the budget needs it) until `stop` is set."""
    if not gate.config.marketo_configured:
        log.error("Marketo is not configured: the worker has nothing to sync")
        return
    # The lease is held between rounds and renewed (LeaseKeeper) until this worker stops or dies.
    sync = mirror_sync_for(gate, stop, owner, keep_lease=True)
    emit("mirror.worker_started", owner=sync.owner)
    watch_switch(gate, "worker", stop)
    rounds = SyncRounds(gate, sync)
    with LeaseKeeper(gate.store, sync.owner, gate.config.sync_lease_seconds):
        while not stop.is_set():
            pause = run_step("mirror sync", rounds.run, on_error=rounds.failed)
            run_step("webhook delivery pruning", lambda: prune_deliveries(gate))
            run_step("mirror removals pruning", lambda: gate.store.mirror.prune_removals(keep=REMOVALS_KEPT))
            drain_outbox(gate)  # Tasks and opt-outs owed to Salesforce; never raises
            rounds.wait(stop, pause)
    emit("mirror.worker_stopped", owner=sync.owner)


def run_step(name: str, step: Callable[[], float | None], on_error: Callable[[], float] | None = None) -> float | None:
    """Run one step of a round; any error is logged (its type only: texts may hold addresses) and survived."""
    try:
        return step()
    except Exception as error:
        pause = on_error() if on_error is not None else None
        retry = f"; retrying in {pause:.1f} s" if pause is not None else ""
        # A fault outside (database, Marketo, network) by its type: its text may hold addresses or URLs.
        # Anything else is a bug, whose traceback must be seen.
        known_fault = isinstance(error, (SQLAlchemyError, MarketoError, OSError))
        log.warning("%s failed: %s%s", name, type(error).__name__, retry, exc_info=not known_fault)
        return pause


class SyncRounds:
    """One sync per call, and how long to wait before the next: the budget's pace, a back-off, or the lease."""

    def __init__(self, gate: Gate, sync: MirrorSync):
        self.gate = gate
        self.sync = sync
        self.backoff = Backoff(gate.config.sync_interval)
        self._waiting_for: str | None = None  # the lease holder last logged as being waited for

    def run(self) -> float:
        report = self.sync.run_once()
        if not report.ran:
            return self.wait_for_lease()
        self._note_lease_taken()
        if report.error:
            return self.failed()
        self.backoff.reset()
        emit("mirror.synced", owner=self.sync.owner, windows_loaded=report.loaded_windows,
             change_pages=report.change_pages, unsubscribed=report.unsubscribed, resubscribed=report.subscribed)
        # Paced by what an idle incremental sync costs, never by the load's calls or a burst's: the first sync
        # after a load comes one interval after it, like every other.
        return self.gate.budget.sync_pause(self.gate.config.sync_interval)

    def failed(self) -> float:
        pause = self.backoff.next()
        breaker = self._breaker()
        if breaker is not None and breaker.is_open:
            pause = max(breaker.seconds_until_probe(), 0.5)  # trying sooner would be refused without a call
        return pause

    def wait(self, stop: threading.Event, pause: float | None) -> None:
        """Wait until the next round; while Marketo's circuit is open, only until another process's probe
        closes it: the mirror resyncs the moment Marketo is known to be back, not at this worker's next try."""
        breaker = self._breaker()
        pause = pause or 0.0
        if breaker is None or not breaker.is_open:
            stop.wait(pause)
            return
        until = time.monotonic() + pause
        while breaker.is_open and not stop.is_set() and (remaining := until - time.monotonic()) > 0:
            stop.wait(min(remaining, breaker.follow_seconds))

    def _breaker(self) -> CircuitBreaker | None:
        return getattr(self.gate.marketo, "breaker", None)

    def wait_for_lease(self) -> float:
        """Another worker holds the lease: say so once per holder, and ask again every third of a lease."""
        status = self.gate.store.sync.status()
        if status.lease_owner != self._waiting_for:
            self._waiting_for = status.lease_owner
            log.info("waiting for the sync lease: %s holds it until %s; asking every %.0f s",
                     status.lease_owner, _clock_time(status.lease_until), self.gate.config.sync_lease_seconds / 3)
        return self.gate.config.sync_lease_seconds / 3

    def _note_lease_taken(self) -> None:
        if self._waiting_for is not None:
            log.info("took over the sync lease from %s", self._waiting_for)
            self._waiting_for = None


def _clock_time(moment: datetime | None) -> str:
    return moment.strftime("%H:%M:%S UTC") if moment is not None else "now"


def prune_deliveries(gate: Gate) -> None:
    """Drop signed callouts' kept answers older than DELIVERY_RETENTION; a failure waits for the next round."""
    try:
        dropped = gate.store.deliveries.prune(utcnow() - DELIVERY_RETENTION)
    except SQLAlchemyError as error:
        emit("deliveries.prune_failed", logging.WARNING, error=type(error).__name__)
        return
    if dropped:
        emit("deliveries.pruned", dropped=dropped, older_than_days=DELIVERY_RETENTION.days)
