"""The worker process: keeps the mirror in sync, paced so the sync's share of the call budget lasts the day."""
from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import SQLAlchemyError

from gateway import Gate
from gateway.marketo.quota import quota_day
from gateway.mirror import MirrorSync
from gateway.salesforce.outbox import drain_outbox
from gateway.store import DELIVERY_RETENTION, utcnow

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
        opt_out_writeback=config.salesforce_configured and config.salesforce_opt_out_writeback,
    )


def run_worker(gate: Gate, stop: threading.Event, owner: str | None = None) -> None:
    """Sync every `GATEWAY_SYNC_INTERVAL` seconds (longer when the budget needs it) until `stop` is set."""
    if not gate.config.marketo_configured:
        log.error("Marketo is not configured: the worker has nothing to sync")
        return
    sync = mirror_sync_for(gate, stop, owner)
    log.info("mirror worker %s started", sync.owner)
    while not stop.is_set():
        before = gate.store.calls.counts(quota_day(utcnow())).sync
        report = sync.run_once()
        spent = gate.store.calls.counts(quota_day(utcnow())).sync - before
        if report.ran and not report.error:
            log.info("mirror synced: %d windows loaded, %d change pages, +%d unsubscribed, -%d re-subscribed",
                     report.loaded_windows, report.change_pages, report.unsubscribed, report.subscribed)
        prune_deliveries(gate)
        drain_outbox(gate)  # Tasks and opt-outs owed to Salesforce; never raises
        stop.wait(gate.budget.sync_pause(gate.config.sync_interval, spent))
    log.info("mirror worker %s stopped", sync.owner)


def prune_deliveries(gate: Gate) -> None:
    """Drop signed callouts' kept answers older than DELIVERY_RETENTION; a failure waits for the next round."""
    try:
        dropped = gate.store.deliveries.prune(utcnow() - DELIVERY_RETENTION)
    except SQLAlchemyError as error:
        log.warning("could not prune webhook deliveries: %s", type(error).__name__)
        return
    if dropped:
        log.info("pruned %d webhook deliveries older than %s", dropped, DELIVERY_RETENTION)
