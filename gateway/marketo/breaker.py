"""A circuit breaker for Marketo: after a run of failures, stop calling it and answer at once, probing now and then.

A failure is a request that got no answer (connection refused, timeout) or a 5xx. After `threshold` of
them in a row the breaker opens: every request is refused before it is sent, without being counted
against any budget, except one probe every `probe_seconds`. A probe that is answered closes the breaker;
one that fails keeps it open for another `probe_seconds`.

With `shared` (the store's `marketo_circuit` row, gateway/store/circuit.py) the breaker is the app's, not
the process's: the process that opens it opens it for every web and worker process, each process follows
the shared state at most every `follow_seconds`, a due probe is claimed by one process only, and an
answered probe closes it for all. So while Marketo is down the whole app makes at most
3600 / `probe_seconds` calls an hour to it, and a check falls to the failure policy at once instead of
spending its deadline waiting. Without `shared` (or while the database cannot be reached) each process
decides alone, with the same rules.

`state`, `opened_total`, `refused_total` and `probes_total` are this process's, for its metrics and tests;
the app-wide totals are in the shared row.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

CLOSED, OPEN, PROBING = "closed", "open", "probing"


class SharedCircuit(Protocol):
    """The app-wide state, in the breaker's clock (epoch seconds): gateway.store.circuit.CircuitRepository."""

    def next_probe_at(self) -> float | None: ...  # None while closed

    def trip(self, now: float, next_probe_at: float) -> float: ...  # the next probe time that stands

    def claim_probe(self, now: float, next_probe_at: float) -> bool: ...  # True for one claimant only

    def close(self) -> bool: ...


class CircuitBreaker:
    def __init__(self, threshold: int = 5, probe_seconds: float = 60.0, clock: Callable[[], float] = time.time,
                 shared: SharedCircuit | None = None, follow_seconds: float = 1.0):
        if threshold < 1 or probe_seconds <= 0:
            raise ValueError("a circuit breaker needs threshold >= 1 and probe_seconds > 0")
        self.threshold = threshold
        self.probe_seconds = probe_seconds
        # Wall-clock seconds: a shared probe schedule must mean the same moment in every process.
        self.clock = clock
        self.shared = shared
        self.follow_seconds = follow_seconds
        self.state = CLOSED
        self.failures_in_a_row = 0
        self.opened_total = 0  # times this process opened it
        self.refused_total = 0  # requests not sent because it was open
        self.probes_total = 0  # probes this process sent
        self._next_probe_at = 0.0
        self._followed_at = -math.inf
        self._shared_failing = False
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """May a request be sent now? While open, True once every `probe_seconds` (that request is the probe)."""
        self._follow()
        with self._lock:
            if self.state == CLOSED:
                return True
            now = self.clock()
            if now < self._next_probe_at:
                self.refused_total += 1
                return False
            # Due. A PROBING state here means the last probe never reported back (its request was abandoned
            # at a deadline): probe again. Claimed under the lock, so one thread of this process probes.
            self._next_probe_at = now + self.probe_seconds
        if not self._claim_shared_probe(now, now + self.probe_seconds):
            with self._lock:
                self.refused_total += 1
            return False
        with self._lock:
            self.state = PROBING
            self.probes_total += 1
        return True

    def refuses(self) -> bool:
        """True while open with no probe due: a caller may fail at once without preparing a request."""
        self._follow()
        with self._lock:
            if self.state == CLOSED or self.clock() >= self._next_probe_at:
                return False
            self.refused_total += 1
            return True

    def record_success(self) -> None:
        with self._lock:
            was_closed = self.state == CLOSED
            self.state = CLOSED
            self.failures_in_a_row = 0
        if not was_closed:
            log.info("Marketo answered a probe: circuit closed, calls resume")
            self._on_shared("close", lambda shared: shared.close())

    def record_failure(self) -> None:
        with self._lock:
            self.failures_in_a_row += 1
            now = self.clock()
            if self.state == PROBING:
                self.state = OPEN
                self._next_probe_at = now + self.probe_seconds
                return
            if self.state != CLOSED or self.failures_in_a_row < self.threshold:
                return
            self.state = OPEN
            self.opened_total += 1
            self._next_probe_at = now + self.probe_seconds
            proposed = self._next_probe_at
        log.warning("Marketo failed %d times in a row: circuit open, answering by policy; next probe in %.0f s",
                    self.failures_in_a_row, self.probe_seconds)
        standing = self._on_shared("open", lambda shared: shared.trip(now, proposed))
        if standing is not None:
            with self._lock:
                self._next_probe_at = standing  # another process opened it first: its probe schedule holds

    def seconds_until_probe(self) -> float:
        """While open: how long until the next probe may be sent (0 when closed or due)."""
        self._follow()
        with self._lock:
            if self.state == CLOSED:
                return 0.0
            return max(self._next_probe_at - self.clock(), 0.0)

    @property
    def is_open(self) -> bool:
        self._follow()
        return self.state != CLOSED

    # --- the app-wide state --------------------------------------------------------------------

    def _follow(self, force: bool = False) -> None:
        """Adopt the shared state, read at most every `follow_seconds`: opened or closed by another process."""
        if self.shared is None:
            return
        now = self.clock()
        with self._lock:
            if not force and now - self._followed_at < self.follow_seconds:
                return
            self._followed_at = now  # before the read: the other threads keep going on what they know
        due = self._on_shared("read", lambda shared: shared.next_probe_at(), failed=False)
        if due is False:
            return
        with self._lock:
            if due is None and self.state != CLOSED:
                log.info("Marketo's circuit was closed by another process's probe: calls resume")
                self.state = CLOSED
                self.failures_in_a_row = 0
            elif due is not None:
                if self.state == CLOSED:
                    log.warning("Marketo's circuit was opened by another process: answering by policy")
                    self.state = OPEN
                self._next_probe_at = due

    def _claim_shared_probe(self, now: float, next_probe_at: float) -> bool:
        """Without a shared state, or when it cannot be reached, this process's own schedule decides."""
        claimed = self._on_shared("claim a probe", lambda shared: shared.claim_probe(now, next_probe_at))
        if claimed is False:
            self._follow(force=True)  # another process took it: learn when the next one is due
            return False
        return True

    def _on_shared(self, what: str, action, failed=None):
        """Run `action` on the shared state; None when there is none, `failed` when it cannot be reached."""
        if self.shared is None:
            return None
        try:
            outcome = action(self.shared)
        except Exception as error:  # the database is away: deciding alone beats failing the caller
            if not self._shared_failing:
                log.warning("could not %s Marketo's shared circuit state: %s; this process decides alone "
                            "until the database answers (said once)", what, type(error).__name__)
            self._shared_failing = True
            return failed
        self._shared_failing = False
        return outcome
