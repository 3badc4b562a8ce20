"""A circuit breaker for Marketo: after a run of failures, stop calling it and answer at once, probing now and then.

A failure is a request that got no answer (connection refused, timeout) or a 5xx. After `threshold` of
them in a row the breaker opens: every request is refused before it is sent, without being counted
against any budget, except one probe every `probe_seconds`. A probe that is answered closes the breaker;
one that fails keeps it open for another `probe_seconds`. So while Marketo is down a process makes at most
3600 / `probe_seconds` calls an hour to it, and a check falls to the failure policy at once instead of
spending its deadline waiting.

The state is a process's own (like the cache); `state`, `opened_total` and `refused_total` are plain
attributes for the metrics.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

CLOSED, OPEN, PROBING = "closed", "open", "probing"


class CircuitBreaker:
    def __init__(self, threshold: int = 5, probe_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic):
        if threshold < 1 or probe_seconds <= 0:
            raise ValueError("a circuit breaker needs threshold >= 1 and probe_seconds > 0")
        self.threshold = threshold
        self.probe_seconds = probe_seconds
        self.clock = clock
        self.state = CLOSED
        self.failures_in_a_row = 0
        self.opened_total = 0  # times it opened since the process started
        self.refused_total = 0  # requests not sent because it was open
        self.probes_total = 0
        self._next_probe_at = 0.0
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """May a request be sent now? While open, True once every `probe_seconds` (that request is the probe)."""
        with self._lock:
            if self.state == CLOSED:
                return True
            now = self.clock()
            if self.state == OPEN and now >= self._next_probe_at:
                self.state = PROBING
                self._next_probe_at = now + self.probe_seconds
                self.probes_total += 1
                return True
            if self.state == PROBING and now >= self._next_probe_at:
                # The probe never reported back (its thread was abandoned at a deadline): probe again.
                self._next_probe_at = now + self.probe_seconds
                self.probes_total += 1
                return True
            self.refused_total += 1
            return False

    def refuses(self) -> bool:
        """True while open with no probe due: a caller may fail at once without preparing a request."""
        with self._lock:
            if self.state == CLOSED or self.clock() >= self._next_probe_at:
                return False
            self.refused_total += 1
            return True

    def record_success(self) -> None:
        with self._lock:
            if self.state != CLOSED:
                log.info("Marketo answered a probe: circuit closed, calls resume")
            self.state = CLOSED
            self.failures_in_a_row = 0

    def record_failure(self) -> None:
        with self._lock:
            self.failures_in_a_row += 1
            if self.state == PROBING:
                self.state = OPEN
                self._next_probe_at = self.clock() + self.probe_seconds
            elif self.state == CLOSED and self.failures_in_a_row >= self.threshold:
                self.state = OPEN
                self.opened_total += 1
                self._next_probe_at = self.clock() + self.probe_seconds
                log.warning(
                    "Marketo failed %d times in a row: circuit open, answering by policy; next probe in %.0f s",
                    self.failures_in_a_row, self.probe_seconds,
                )

    def seconds_until_probe(self) -> float:
        """While open: how long until the next probe may be sent (0 when closed or due)."""
        with self._lock:
            if self.state == CLOSED:
                return 0.0
            return max(self._next_probe_at - self.clock(), 0.0)

    @property
    def is_open(self) -> bool:
        return self.state != CLOSED
