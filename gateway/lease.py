"""Keeps the worker's sync lease alive: renewed every third of its length, from a thread of its own.

The lease is short (GATEWAY_SYNC_LEASE_SECONDS, 15 s by default) so that a worker that died is replaced
within seconds; a live worker keeps it by renewing it while it lives, between syncs and during a long one
alike. Renewing only extends a lease this worker holds (the store's fence): a worker that lost it, or never
had it, renews nothing.
"""
from __future__ import annotations

import logging
import threading

from gateway.store import LeaseLost, Store

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, store: Store, owner: str, seconds: float):
        self.store = store
        self.owner = owner
        self.seconds = seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._renew_until_stopped, name="sync-lease", daemon=True)

    @property
    def every(self) -> float:
        return self.seconds / 3

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopped.set()
        self._thread.join(timeout=self.every + 5)
        try:
            self.store.sync.release_lease(self.owner)  # a clean stop hands over at once
        except Exception as error:
            log.warning("could not release the sync lease: %s", type(error).__name__)

    def _renew_until_stopped(self) -> None:
        failing = False
        while not self._stopped.wait(self.every):
            try:
                self.store.sync.renew_lease(self.owner, self.seconds)
            except LeaseLost:
                pass  # not ours (another worker syncs, or ours ran out): the sync's next round asks again
            except Exception as error:  # the database is away: the lease may run out, the fence keeps writes safe
                if not failing:
                    log.warning("could not renew the sync lease: %s (said once until it works again)",
                                type(error).__name__)
                failing = True
                continue
            failing = False
