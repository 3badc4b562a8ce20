"""The instance's limits (615 concurrency, 606 rate window, 607 daily quota), injected faults,
and the counters ``/_sim/stats`` reports: how each incoming call is admitted."""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from gateway.marketo.quota import quota_day
from gateway.simulators.marketo.protocol import ERROR_MESSAGES, fmt_number

@dataclass
class Fault:
    code: str | None
    http_status: int | None
    latency: float
    remaining: int | None  # None = until cleared
    paths: str

    def describe(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "http_status": self.http_status,
            "latency": self.latency,
            "count": self.remaining,
            "paths": self.paths,
        }


@dataclass
class Admission:
    """The verdict on one incoming call, decided under the state lock. An admitted
    REST call (no ``reject``) is in flight until ``_leave()``."""

    reject: str | None = None  # "606" / "607" / "615"
    fault: Fault | None = None
    release: threading.Event | None = None  # set to cut the fault's latency short


class FaultsMixin:
    """The injected faults of ``SimulatorState``: a queue per kind of path, oldest first."""

    _lock: threading.Lock

    def _reset_faults_locked(self) -> None:
        self._faults: dict[str, list[Fault]] = {"rest": [], "identity": []}
        self._faults_served = 0

    def inject_fault(
        self,
        code: str | None = None,
        *,
        http_status: int | None = None,
        latency: float = 0.0,
        count: int | None = None,
        paths: str = "rest",
    ) -> None:
        """For the next ``count`` calls (None = until cleared) on ``paths`` ("rest"
        or "identity"), sleep ``latency`` seconds then answer with Marketo error
        ``code`` or the bare HTTP ``http_status`` (which wins over ``code``); with
        latency alone the answers are slow but correct. Faults queue up: each
        call takes the oldest active one."""
        if paths not in ("rest", "identity"):
            raise ValueError("paths must be 'rest' or 'identity'")
        if code is not None:
            code = str(code)
            if not code:
                raise ValueError("code must not be empty")
        if http_status is not None:
            if isinstance(http_status, bool) or not isinstance(http_status, int) or not 100 <= http_status <= 599:
                raise ValueError("http_status must be an HTTP status code")
        if isinstance(latency, bool) or not isinstance(latency, (int, float)) or latency < 0:
            raise ValueError("latency must be a number >= 0")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise ValueError("count must be a positive integer or None")
        if code is None and http_status is None and not latency:
            raise ValueError("a fault needs a code, an http_status or a latency")
        with self._lock:
            self._faults[paths].append(
                Fault(code, http_status, float(latency), count, paths)
            )

    def clear_faults(self) -> None:
        """Remove every fault and cut short latency sleeps in progress."""
        with self._lock:
            self._faults = {"rest": [], "identity": []}
            self._wake_sleepers_locked()

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.describe() for kind in ("rest", "identity") for f in self._faults[kind]]

    def _take_fault_locked(self, paths: str) -> Fault | None:
        queue = self._faults[paths]
        if not queue:
            return None
        fault = queue[0]
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.pop(0)
        self._faults_served += 1
        return fault


class LimitsMixin(FaultsMixin):
    """Admission of ``SimulatorState``'s calls against the instance's limits, and its counters."""

    clock: Callable[[], float]
    wall_clock: Callable[[], datetime]
    rate_limit_calls: int
    rate_limit_window: float
    max_concurrent: int
    daily_quota: int
    _in_flight: int
    _release: threading.Event

    def _reset_limits_locked(self) -> None:
        self._reset_faults_locked()
        self._window: deque[float] = deque()
        self._quota_day: date | None = None
        self._quota_used = 0
        self._calls: dict[str, int] = {"token": 0, "leads": 0}
        self._rest_calls = 0
        self._rejected: dict[str, int] = {}
        self._errors: dict[str, int] = {}
        self._max_in_flight = 0
        self._max_window_calls = 0

    def _admit_rest(self, endpoint: str) -> Admission:
        with self._lock:
            self._calls[endpoint] = self._calls.get(endpoint, 0) + 1
            self._rest_calls += 1
            if self._in_flight >= self.max_concurrent:
                return self._reject_locked("615")
            now = self.clock()
            window = self._window
            while window and window[0] <= now - self.rate_limit_window:
                window.popleft()
            if len(window) >= self.rate_limit_calls:
                return self._reject_locked("606")
            day = quota_day(self.wall_clock())
            if day != self._quota_day:
                self._quota_day, self._quota_used = day, 0
            if self._quota_used >= self.daily_quota:
                return self._reject_locked("607")
            self._quota_used += 1
            window.append(now)
            self._max_window_calls = max(self._max_window_calls, len(window))
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            return Admission(fault=self._take_fault_locked("rest"), release=self._release)

    def _admit_identity(self) -> Admission:
        with self._lock:
            self._calls["token"] += 1
            return Admission(fault=self._take_fault_locked("identity"), release=self._release)

    def _reject_locked(self, code: str) -> Admission:
        self._rejected[code] = self._rejected.get(code, 0) + 1
        return Admission(reject=code)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _count_error(self, code: str | int) -> None:
        with self._lock:
            key = str(code)
            self._errors[key] = self._errors.get(key, 0) + 1

    def _count_http_reject(self, status: int) -> None:
        with self._lock:
            key = str(status)
            self._rejected[key] = self._rejected.get(key, 0) + 1
            self._errors[key] = self._errors.get(key, 0) + 1

    def error_message(self, code: str) -> str:
        if code == "606":
            return (
                f"Max rate limit '{self.rate_limit_calls}' exceeded with in "
                f"'{fmt_number(self.rate_limit_window)}' secs"
            )
        return ERROR_MESSAGES.get(code, "Error")
