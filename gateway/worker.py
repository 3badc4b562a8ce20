"""The worker process: keeps the mirror in sync, paced so the sync's share of the call budget lasts the day."""
from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import SQLAlchemyError

from gateway import Gate
from gateway.events import emit
from gateway.mirror import MirrorSync
from gateway.store import DELIVERY_RETENTION, utcnow
from gateway.switch import watch_switch

log = logging.getLogger(__name__)


def mirror_sync_for(gate: Gate, stop: threading.Event, owner: str | None = None) -> MirrorSync:
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
    )


def run_worker(gate: Gate, stop: threading.Event, owner: str | None = None) -> None:
    """Sync every `GATEWAY_SYNC_INTERVAL` seconds (longer when the budget needs it) until `stop` is set."""
    if not gate.config.marketo_configured:
        log.error("Marketo is not configured: the worker has nothing to sync")
        return
    sync = mirror_sync_for(gate, stop, owner)
    emit("mirror.worker_started", owner=sync.owner)
    watch_switch(gate, "worker", stop)
    while not stop.is_set():
        report = sync.run_once()
        if report.ran and not report.error:
            emit("mirror.synced", owner=sync.owner, windows_loaded=report.loaded_windows,
                 change_pages=report.change_pages, unsubscribed=report.unsubscribed, resubscribed=report.subscribed)
        prune_deliveries(gate)
        # Paced by what an incremental sync costs, never by the load's calls: the first sync after a load
        # comes one interval after it, like every other.
        stop.wait(gate.budget.sync_pause(gate.config.sync_interval, report.change_calls))
    emit("mirror.worker_stopped", owner=sync.owner)


def prune_deliveries(gate: Gate) -> None:
    """Drop signed callouts' kept answers older than DELIVERY_RETENTION; a failure waits for the next round."""
    try:
        dropped = gate.store.deliveries.prune(utcnow() - DELIVERY_RETENTION)
    except SQLAlchemyError as error:
        emit("deliveries.prune_failed", logging.WARNING, error=type(error).__name__)
        return
    if dropped:
        emit("deliveries.pruned", dropped=dropped, older_than_days=DELIVERY_RETENTION.days)
