"""The mirror's full load through Bulk Lead Extract, measured in minutes rather than hours.

- Without a list: one export job per 31-day `createdAt` window, up to `max_jobs` of them queued in Marketo at
  once (Marketo processes 2 and queues 10, processing included), so Marketo's two processing slots never wait
  for the gate's poll.
- With a smart list or static list the admin names (its id, or its name found through the asset API): one job
  with the `smartListId` / `staticListId` filter, no date windows.

The plan (every job: its window or list, its export id once created, its row count once applied) is saved in
the sync state with each step, so a worker that dies resumes the jobs already queued instead of starting over.
Each job's status is polled at most every `poll_seconds` (Adobe asks for at most one poll a minute), and only
up to the first job still queued: Marketo starts queued jobs in order, so the ones behind it are queued too.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.events import emit
from gateway.marketo import MarketoUnavailable
from gateway.marketo.wire import is_marketo_true
from gateway.marketo.interfaces import MarketoService
from gateway.store import Store, SyncStatus

log = logging.getLogger(__name__)

EXPORT_FIELDS = ("id", "email", "unsubscribed")
WINDOW = timedelta(days=31)  # Bulk Lead Extract's longest createdAt range
WINDOWS_SOURCE = "createdAt windows"
EXPORT_QUEUE_FULL = "1029"  # Marketo's bulk export queue is full: enqueue again later


class SyncStopped(Exception):
    """The worker was asked to stop while it waited for an export."""


@dataclass(frozen=True)
class LoadProgress:
    """How far the full load is: what `GET /v1/admin/status` shows and the worker logs."""

    source: str  # "createdAt windows", or the list: "smartList 1001"
    jobs_total: int
    jobs_done: int
    jobs_in_flight: int
    rows: int  # export rows read so far
    elapsed_seconds: float
    eta_seconds: float | None  # from the pace so far; None before the first job is done

    @property
    def percent(self) -> float:
        return 100.0 * self.jobs_done / self.jobs_total if self.jobs_total else 100.0


def load_progress(status: SyncStatus, now: datetime) -> LoadProgress | None:
    """The load's progress from the saved plan; None when no load has been planned."""
    plan = status.load_plan
    if not plan or status.load_started_at is None:
        return None
    done = [step for step in plan if step.get("rows") is not None]
    in_flight = sum(1 for step in plan if step.get("rows") is None and step.get("export_id"))
    finished_at = status.load_finished_at if status.load_status == "complete" else None
    elapsed = max(((finished_at or now) - status.load_started_at).total_seconds(), 0.0)
    left = len(plan) - len(done)
    eta = 0.0 if not left else (elapsed / len(done) * left if done else None)
    return LoadProgress(
        source=status.load_source or WINDOWS_SOURCE, jobs_total=len(plan), jobs_done=len(done),
        jobs_in_flight=in_flight, rows=sum(step["rows"] for step in done), elapsed_seconds=elapsed, eta_seconds=eta,
    )


def log_progress(progress: LoadProgress) -> None:
    """The worker's event per export job applied."""
    emit("mirror.load_progress", source=progress.source, jobs_done=progress.jobs_done, jobs_total=progress.jobs_total,
         rows=progress.rows, jobs_in_flight=progress.jobs_in_flight, elapsed_seconds=round(progress.elapsed_seconds),
         eta_seconds=None if progress.eta_seconds is None else round(progress.eta_seconds))


def window_plan(load_from: datetime, load_until: datetime, first_export_id: str | None = None) -> list[dict]:
    plan, start = [], load_from
    while start < load_until:
        end = min(start + WINDOW, load_until)
        plan.append({"start": start.isoformat(), "end": end.isoformat(), "export_id": None, "rows": None})
        start = end
    if plan and first_export_id:
        plan[0]["export_id"] = first_export_id
    return plan


class FullLoad:
    """Runs (or resumes) the load saved in the sync state; only while `owner` holds the lease."""

    def __init__(self, store: Store, marketo: MarketoService, *, owner: str, now: Callable[[], datetime],
                 stop: threading.Event, poll_seconds: float, lease_seconds: float, max_jobs: int,
                 email_of: Callable[[object], str | None], apply: Callable[..., None], list_kind: str | None = None,
                 list_ref: str | None = None, on_progress: Callable[[LoadProgress], None] = log_progress):
        self.store, self.marketo, self.owner, self.now, self.stop = store, marketo, owner, now, stop
        self.poll_seconds, self.lease_seconds, self.max_jobs = poll_seconds, lease_seconds, max(1, max_jobs)
        self.email_of = email_of  # the mirror's key of an address as Marketo holds it
        self.apply = apply  # writes the mirror's rows and the position together (MirrorSync._apply_changes)
        self.list_kind, self.list_ref = list_kind, list_ref
        self.on_progress = on_progress

    def plan_for(self, load_from: datetime, started: datetime) -> tuple[list[dict], str]:
        """A new load's plan and its source: one list job, or the createdAt windows."""
        if self.list_kind is None or not self.list_ref:
            return window_plan(load_from, started), WINDOWS_SOURCE
        list_id = int(self.list_ref) if self.list_ref.isdigit() else self.marketo.list_id_by_name(
            self.list_kind, self.list_ref)
        return [{"list": self.list_kind, "list_id": list_id, "export_id": None, "rows": None}], \
            f"{self.list_kind} {list_id}"

    def run(self, status: SyncStatus, report) -> None:
        plan = [dict(step) for step in (status.load_plan or self._plan_of_an_older_load(status))]
        self._start_jobs(plan)
        while any(step["rows"] is None for step in plan):
            if self.stop.wait(self.poll_seconds):
                raise SyncStopped()
            self.store.sync.renew_lease(self.owner, self.lease_seconds)
            self._poll(plan, report)
            self._start_jobs(plan)
        self.store.sync.update(self.owner, load_status="complete", load_finished_at=self.now(), **self._position(plan))

    def _plan_of_an_older_load(self, status: SyncStatus) -> list[dict]:
        """A load begun before plans were saved: its remaining windows, its job in flight kept."""
        return window_plan(status.load_window_start, status.load_started_at, status.load_export_id)

    def _start_jobs(self, plan: list[dict]) -> None:
        in_flight = sum(1 for step in plan if step["rows"] is None and step["export_id"])
        for step in plan:
            if in_flight >= self.max_jobs:
                return
            if step["rows"] is not None or step["export_id"]:
                continue
            step["export_id"] = self._create(step)
            self._save(plan)
            in_flight += 1
            if not self._enqueue(step["export_id"]):
                return

    def _create(self, step: dict) -> str:
        if "list" in step:
            return self.marketo.create_list_export(EXPORT_FIELDS, step["list"], step["list_id"])
        return self.marketo.create_lead_export(
            EXPORT_FIELDS, datetime.fromisoformat(step["start"]), datetime.fromisoformat(step["end"]))

    def _enqueue(self, export_id: str) -> bool:
        """False when Marketo's queue is full (other integrations share it): the job waits, Created."""
        try:
            self.marketo.enqueue_lead_export(export_id)
        except MarketoUnavailable as error:
            if error.code != EXPORT_QUEUE_FULL:
                raise
            return False
        return True

    def _poll(self, plan: list[dict], report) -> None:
        for step in [step for step in plan if step["rows"] is None and step["export_id"]]:
            status = self.marketo.lead_export_status(step["export_id"]).get("status")
            if status == "Completed":
                self._apply(plan, step, report)
            elif status == "Created":
                if not self._enqueue(step["export_id"]):
                    return
            elif status == "Queued":
                return  # Marketo starts queued jobs in order: the ones behind this one are queued too
            elif status != "Processing":
                # Forget the job so the next run starts this window again with a new one.
                step["export_id"] = None
                self._save(plan)
                raise MarketoUnavailable(f"Marketo's lead export ended {status or 'without a status'}")

    def _apply(self, plan: list[dict], step: dict, report) -> None:
        rows = list(self.marketo.lead_export_rows(step["export_id"]))
        unsubscribed = [
            email for row in rows if is_marketo_true(row.get("unsubscribed")) and (email := self.email_of(row.get("email")))
        ]
        step["rows"] = len(rows)
        self.apply(unsubscribed=unsubscribed, state=self._position(plan))
        report.loaded_windows += 1
        report.unsubscribed += len(unsubscribed)
        progress = load_progress(self.store.sync.status(), self.now())
        if progress is not None:
            self.on_progress(progress)

    def _save(self, plan: list[dict]) -> None:
        self.store.sync.update(self.owner, **self._position(plan))

    @staticmethod
    def _position(plan: list[dict]) -> dict:
        """The plan, and the start of the first window not yet applied (what the status showed before plans)."""
        windows = [step for step in plan if "start" in step]
        state: dict = {"load_plan": [dict(step) for step in plan], "load_export_id": None}
        if windows:
            first_open = next((step["start"] for step in windows if step["rows"] is None), windows[-1]["end"])
            state["load_window_start"] = datetime.fromisoformat(first_open)
        return state
