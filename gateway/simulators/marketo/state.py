"""``SimulatorState``: everything one simulated Marketo instance knows, under one lock, and the
demo's seed data. Each concern lives in its own part (leads, activities, exports, tokens,
limits and faults); this class puts them together and owns what they share."""
from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from gateway.simulators.marketo.activities import ActivitiesMixin, resolve_activity_type_ids
from gateway.simulators.marketo.auth import TokensMixin
from gateway.simulators.marketo.exports import SIMULATED_FILTER_TYPES, ExportsMixin
from gateway.simulators.marketo.leads import LeadsMixin
from gateway.simulators.marketo.limits import LimitsMixin
from gateway.simulators.marketo.lists import ListsMixin
from gateway.simulators.marketo.protocol import utcnow


class SimulatorState(LeadsMixin, ActivitiesMixin, ExportsMixin, ListsMixin, TokensMixin, LimitsMixin):
    """Everything the simulator knows. Thread-safe: one lock guards it all."""

    def __init__(
        self,
        *,
        client_id: str = "sim-client",
        client_secret: str = "sim-secret",
        token_ttl: int = 3600,
        rate_limit_calls: int = 100,
        rate_limit_window: float = 20.0,
        max_concurrent: int = 10,
        daily_quota: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utcnow,
        activity_type_ids: Mapping[str, int] | None = None,
        export_polls_to_complete: int = 2,
        export_filters_supported: Iterable[str] = ("createdAt",),
        export_job_seconds: float | None = None,
    ):
        """``activity_type_ids`` overrides type ids by name (``{"Unsubscribe Email": 2009}``);
        an export job completes on the ``export_polls_to_complete``-th status poll once
        it is processing, or, when ``export_job_seconds`` is set, after that long processing
        on ``wall_clock`` (queued jobs start as slots free, polled or not);
        ``export_filters_supported`` are the Bulk Lead Extract filters this subscription has
        (others answer 1035; date and list-id filters are simulated)."""
        if isinstance(export_polls_to_complete, bool) or not isinstance(export_polls_to_complete, int) \
                or export_polls_to_complete < 1:
            raise ValueError("export_polls_to_complete must be a positive integer")
        filters = frozenset(export_filters_supported)
        if not filters <= set(SIMULATED_FILTER_TYPES):
            raise ValueError(f"only {SIMULATED_FILTER_TYPES} filters are simulated")
        if export_job_seconds is not None and not export_job_seconds >= 0:
            raise ValueError("export_job_seconds must be a number of seconds, 0 or more")
        self.export_job_seconds = export_job_seconds
        self.activity_type_ids = resolve_activity_type_ids(activity_type_ids)
        self.export_polls_to_complete = export_polls_to_complete
        self.export_filters_supported = filters
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self.rate_limit_calls = rate_limit_calls
        self.rate_limit_window = rate_limit_window
        self.max_concurrent = max_concurrent
        self.daily_quota = daily_quota
        self.clock = clock
        self.wall_clock = wall_clock
        self._lock = threading.Lock()
        self._request_seq = itertools.count(int(time.time() * 1000) & 0xFFFFFFFFFF)
        self._in_flight = 0  # survives reset(): requests may still be running
        self._release = threading.Event()
        self._reset_locked()

    def _reset_locked(self) -> None:
        self._reset_leads_locked()
        self._reset_tokens_locked()
        self._reset_limits_locked()
        self._reset_activities_locked()
        self._reset_exports_locked()
        self._reset_lists_locked()
        self._wake_sleepers_locked()

    def _wake_sleepers_locked(self) -> None:
        self._release.set()
        self._release = threading.Event()

    def reset(self) -> None:
        """Forget leads, activities, export jobs, tokens, counters and faults (keeps
        credentials, limits and activity type ids)."""
        with self._lock:
            self._reset_locked()

    def release_waiters(self) -> None:
        """Cut short every latency sleep in progress (faults stay active)."""
        with self._lock:
            self._wake_sleepers_locked()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": dict(self._calls),
                "rest_calls": self._rest_calls,
                "rejected": dict(self._rejected),
                "errors": dict(self._errors),
                "faults_served": self._faults_served,
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "max_window_calls": self._max_window_calls,
                "quota_used": self._quota_used,
                "leads": len(self._leads),
                "tokens_issued": len(self._tokens),
                "activities": len(self._activities),
                "export_jobs": self._export_counts_locked(),
            }

    def request_id(self) -> str:
        return f"{secrets.token_hex(2)}#{next(self._request_seq):x}"


def seed_demo(state: SimulatorState) -> None:
    """A few leads for the demo."""
    state.add_lead("jane@example.com", unsubscribed=True,
                   attributes={"firstName": "Jane", "lastName": "Doe"})
    state.add_lead("unsub@example.com", unsubscribed=True,
                   attributes={"firstName": "Una", "lastName": "Subscribed"})
    state.add_lead("bob@example.com", attributes={"firstName": "Bob", "lastName": "Smith"})
    state.add_lead("alice@example.com", attributes={"firstName": "Alice", "lastName": "Jones"})
    state.add_lead("dup@example.com", attributes={"firstName": "Dee", "lastName": "Up"})
    state.add_lead("dup@example.com", unsubscribed=True,
                   attributes={"firstName": "Dee", "lastName": "Up"})
