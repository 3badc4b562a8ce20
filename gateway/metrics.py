"""What `GET /metrics` shows, in Prometheus's text format (prometheus-client).

Two kinds of numbers:
- counted as things happen, in the process that saw them (checks, their latency, Marketo and Salesforce calls,
  rate-limit rejections). Under gunicorn each worker writes them to files in PROMETHEUS_MULTIPROC_DIR
  (gunicorn.conf.py sets it up) and a scrape adds every worker's up; elsewhere they live in this process.
- read from the database at scrape time (`StoreGauges`): the switch, the budget left, the mirror's size, lag and
  load progress, the outbox depth. Every process sees the same database, so these are right whichever worker
  answers the scrape, and they are never written to the multiprocess files.

The check path pays one counter increment, one histogram observation and one increment per distinct verdict
(usually one or two), whatever the number of recipients.
"""
from __future__ import annotations

import logging
import os
from collections import Counter as Tally
from collections.abc import Collection, Iterable
from datetime import datetime
from functools import cache

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.events import emit
from gateway.marketo import (
    MarketoAuthError,
    MarketoBudgetExhausted,
    MarketoConfigError,
    MarketoError,
    MarketoQuotaExceeded,
    MarketoRequestError,
    MarketoUnavailable,
)
from gateway.marketo.quota import quota_day
from gateway.mirror import is_mirror_fresh
from gateway import mirror_load
from gateway.store import Store, SyncStatus, utcnow

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus-client itself when it is imported
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
disable_created_metrics()  # the `_created` series double the output and no dashboard of ours reads them
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)

CHECKS = Counter(
    "gateway_checks", "Checks answered, by caller source, workflow and decision (deny: a recipient was kept from "
    "a message)", ["source", "workflow", "decision"])
CHECKED_ADDRESSES = Counter(
    "gateway_checked_addresses", "Addresses decided by checks (each address once per check), by source, workflow, "
    "decision, reason and checked_via", ["source", "workflow", "decision", "reason", "checked_via"])
CHECK_SECONDS = Histogram(
    "gateway_check_duration_seconds", "Time from a check's arrival to its answer, by caller source", ["source"],
    buckets=LATENCY_BUCKETS)
MARKETO_CALLS = Counter(
    "gateway_marketo_calls", "Requests to Marketo by this web process or worker, by kind (token, lookup, sync) and "
    "outcome (ok, unavailable, quota_exceeded, auth_refused, access_denied, request_error, budget_spent)",
    ["kind", "outcome"])
SALESFORCE_CALLS = Counter(
    "gateway_salesforce_calls", "Requests to Salesforce, by kind and outcome (see record_salesforce_call)",
    ["kind", "outcome"])
RATE_LIMITED = Counter("gateway_rate_limited_requests", "Requests refused with 429 rate_limited")

# Most specific first: a MarketoBudgetExhausted is no MarketoUnavailable, but order keeps it plain.
MARKETO_OUTCOMES = (
    (MarketoBudgetExhausted, "budget_spent"),
    (MarketoQuotaExceeded, "quota_exceeded"),
    (MarketoAuthError, "auth_refused"),
    (MarketoConfigError, "access_denied"),
    (MarketoUnavailable, "unavailable"),
    (MarketoRequestError, "request_error"),
)


# --- counted as it happens ----------------------------------------------------------------------------------


def count_check(source: str, workflow: str, denied: bool, verdicts: Collection, invalid: int, seconds: float) -> None:
    """One check: `verdicts` are the chain's Verdicts, one per address; `invalid` addresses the schema refused."""
    checks, latency = _check_series(source, workflow, denied)
    checks.inc()
    latency.observe(seconds)
    for verdict, count in _tally(verdicts).items():
        _address_series(source, workflow, verdict).inc(count)
    if invalid:
        _child(CHECKED_ADDRESSES, source, workflow, "deny", "invalid_address", "validation").inc(invalid)


def _tally(verdicts: Collection) -> dict:
    """How many addresses got each verdict. Tallied by identity (a C-speed pass: the chain hands out shared
    Verdict objects), then by value over those few groups; most checks have one group, however many addresses."""
    by_id = dict(zip(map(id, verdicts), verdicts))
    if len(by_id) == 1:
        return dict.fromkeys(by_id.values(), len(verdicts))
    by_value: Tally = Tally()
    for key, count in Tally(map(id, verdicts)).items():
        by_value[by_id[key]] += count
    return by_value


# Labelled series by (metric, *labels), so a check pays a dict lookup, not labels()'s lock and str() of each
# label; prometheus-client keeps the same objects in the metric (its values notice a fork themselves). A check
# looks up its series by what it has in hand (source, workflow, decision; each Verdict), once per process.
_children: dict[tuple, object] = {}


def _child(metric, *labels):
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children.setdefault(key, metric.labels(*labels))
    return child


@cache
def _check_series(source: str, workflow: str, denied: bool) -> tuple:
    return _child(CHECKS, source, workflow, "deny" if denied else "allow"), _child(CHECK_SECONDS, source)


@cache
def _address_series(source: str, workflow: str, verdict):
    return _child(CHECKED_ADDRESSES, source, workflow, verdict.decision, verdict.reason_code, verdict.checked_via)


def marketo_outcome(error: MarketoError | None) -> str:
    if error is None:
        return "ok"
    return next((name for kind, name in MARKETO_OUTCOMES if isinstance(error, kind)), "request_error")


def record_marketo_call(kind: str, error: MarketoError | None) -> None:
    """The Marketo client's `on_outcome` hook: one request (with its retries) ended, well or not."""
    outcome = marketo_outcome(error)
    MARKETO_CALLS.labels(kind, outcome).inc()
    if error is not None:
        emit("marketo.error", logging.WARNING, kind=kind, outcome=outcome, code=error.code, message=error.message)


def record_salesforce_call(kind: str, outcome: str) -> None:
    """For the Salesforce client: one request ended. `kind` names the call (e.g. `token`, `create`, `query`),
    `outcome` how it ended (`ok`, or a short error class such as `unavailable`, `auth_refused`, `rejected`)."""
    SALESFORCE_CALLS.labels(kind, outcome).inc()


def count_rate_limited() -> None:
    RATE_LIMITED.inc()


# --- read from the database at scrape time ------------------------------------------------------------------


def outbox_depth(store: Store) -> int:
    """Tasks and opt-outs waiting to be written to Salesforce (0 while Salesforce is not configured)."""
    return store.outbox.depth()


def load_progress(sync: SyncStatus, now: datetime) -> float:
    """The share of the full load done: 0 before it is planned, 1 when complete (gateway.mirror_load's progress)."""
    if sync.load_status == "complete":
        return 1.0
    progress = mirror_load.load_progress(sync, now)
    return progress.percent / 100 if progress is not None else 0.0


def _gauge(name: str, documentation: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    if labels is None:
        return GaugeMetricFamily(name, documentation, value=value)
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


class StoreGauges(Collector):
    """The gauges read from the database when a scrape asks: the same in every process."""

    def __init__(self, gate):
        self.gate = gate

    def collect(self) -> Iterable[GaugeMetricFamily]:
        gate = self.gate
        store, config, now = gate.store, gate.config, utcnow()
        settings = store.settings.get()
        sync = store.sync.status()
        counts = store.calls.counts(quota_day(now))
        yield _gauge("gateway_check_enabled", "1 when the Marketo check is on; 0: every send is allowed "
                     "(check_disabled)", int(settings.marketo_check_enabled))
        calls = GaugeMetricFamily("gateway_marketo_calls_today", "Marketo calls counted today (Marketo's quota day) "
                                  "by every process, by kind", labels=["kind"])
        for kind in ("token", "lookup", "sync"):
            calls.add_metric([kind], getattr(counts, kind))
        yield calls
        yield _gauge("gateway_marketo_budget_daily", "GATEWAY_MARKETO_DAILY_BUDGET", gate.budget.daily_limit)
        yield _gauge("gateway_marketo_budget_remaining", "Marketo calls left in today's budget",
                     max(gate.budget.daily_limit - counts.used, 0))
        yield _gauge("gateway_mirror_size", "Unsubscribed addresses in the mirror", store.mirror.size())
        yield _gauge("gateway_mirror_fresh", "1 when the mirror answers checks (loaded and synced within "
                     "GATEWAY_MIRROR_MAX_AGE)", int(is_mirror_fresh(sync, config.mirror_max_age, now)))
        if sync.last_success_at is not None:
            yield _gauge("gateway_mirror_lag_seconds", "Seconds since the last successful sync",
                         (now - sync.last_success_at).total_seconds())
        yield _gauge("gateway_mirror_load_progress_ratio", "Share of the full load done (0 to 1)",
                     load_progress(sync, now))
        yield _gauge("gateway_outbox_depth", "Blocked sends waiting to be written to Salesforce (0: no outbox)",
                     outbox_depth(store))


def exposition(gate) -> bytes:
    """The text a scrape gets: every worker's counters (multiprocess mode) or this process's, then the gauges."""
    if os.environ.get(MULTIPROCESS_DIR):
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:
        counted = REGISTRY
    read = CollectorRegistry(auto_describe=False)
    read.register(StoreGauges(gate))
    return generate_latest(counted) + generate_latest(read)
