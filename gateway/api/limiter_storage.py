"""The rate limiter's in-process counts (no REDIS_URL), without a new thread on every request.

limits' MemoryStorage sweeps expired windows in a threading.Timer that it starts again, 10 ms on, whenever
the last one has finished: under load that is a thread started for every few requests, most of what counting
in-process costs. Counting needs no sweep (a read drops an expired window itself); the sweep only frees the
memory of idle keys, so here it runs at most once a second. Same counts, same windows, same answers.
"""
from __future__ import annotations

import time

from limits.storage import MemoryStorage

SWEEP_SECONDS = 1.0


class SweepingMemoryStorage(MemoryStorage):
    STORAGE_SCHEME = ["gate-memory"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: str):
        self._swept_at = time.monotonic()
        super().__init__(uri, wrap_exceptions, **options)

    def _MemoryStorage__schedule_expiry(self) -> None:  # MemoryStorage's private hook, pinned by limits<6
        now = time.monotonic()
        if now - self._swept_at >= SWEEP_SECONDS:
            self._swept_at = now
            super()._MemoryStorage__schedule_expiry()
