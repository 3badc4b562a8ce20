"""The mirror's full load, measured in minutes rather than hours.

- With a smart list or static list the admin names (its id, or its name found through the asset API): one
  Bulk Lead Extract job with the `smartListId` / `staticListId` filter, no date windows.
- Without a list, the load first exports the newest 31-day `createdAt` window (older ones while the newest
  are empty). Its rows give the newest lead id; Marketo numbers leads in the order they are created, so every
  lead of the instance has an id up to that one (a lead created since is a New Lead in the change stream).
  Then, as GATEWAY_MIRROR_LOAD says ("auto" by default), it goes on one of two ways:
  - by lead ids: `leads.json?filterType=id`, 300 ids a call, from 1 past the newest id (until 3 batches in a
    row are empty), at most `walk_calls_per_second`. About one call per 300 leads ever created;
  - by windows: one export job per remaining window, up to `max_jobs` queued in Marketo at once (Marketo
    processes 2 and queues 10, processing included), so its two processing slots never wait for the gate's
    poll. About 4 calls per window, and at least half a job's time per window: an hour for 20 years.
  "auto" walks the ids when that takes fewer calls than the windows and at most half of the sync's calls
  left today; "ids" and "windows" force one way.

The plan (every job: its window or list, its export id once created, its row count once applied; the walk:
the next id) is saved in the sync state with each step, so a worker that dies resumes the jobs already
queued, or the walk at its next id, instead of starting over. Each job's status is polled at most every
`poll_seconds` (Adobe asks for at most one poll a minute), and only up to the first job still queued:
Marketo starts queued jobs in order, so the ones behind it are queued too.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.events import emit
from gateway.marketo import MarketoUnavailable
from gateway.marketo.wire import MAX_BATCH_SIZE, is_marketo_true
from gateway.marketo.interfaces import MarketoService
from gateway.store import Store, SyncStatus

log = logging.getLogger(__name__)

EXPORT_FIELDS = ("id", "email", "unsubscribed")
WINDOW = timedelta(days=31)  # Bulk Lead Extract's longest createdAt range
WINDOWS_SOURCE = "createdAt windows"
IDS_SOURCE = "lead ids"
UNDECIDED_SOURCE = "createdAt windows or lead ids"  # until the newest window's rows say which is cheaper
FRONTIER_JOBS = 2  # newest windows exported at once before the choice: Marketo's processing slots
IDS_PAST_THE_END = 3  # empty batches past the newest known id that end the walk
CALLS_PER_EXPORT_JOB = 4  # create, enqueue, at least one status poll, the file
WALK_CALLS_PER_SECOND = 2.0  # Adobe asks one integration for at most 50 calls in 20 s; the rest is for checks
PROGRESS_EVERY = 10.0  # seconds between the walk's progress events
EXPORT_QUEUE_FULL = "1029"  # Marketo's bulk export queue is full: enqueue again later


class SyncStopped(Exception):
    """The worker was asked to stop while it waited for an export."""


@dataclass(frozen=True)
class LoadProgress:
    """How far the full load is: what `GET /v1/admin/status` shows and the worker logs."""

    source: str  # "createdAt windows", "lead ids", or the list: "smartList 1001"
    jobs_total: int  # export jobs, plus the walk's batches of 300 ids (an estimate until the walk ends)
    jobs_done: int
    jobs_in_flight: int
    rows: int  # export rows and leads read so far
    elapsed_seconds: float
    eta_seconds: float | None  # from the pace so far (the walk: its own pace); None before anything is done

    @property
    def percent(self) -> float:
        return 100.0 * self.jobs_done / self.jobs_total if self.jobs_total else 100.0


def in_flight(step: dict) -> bool:
    """An export job created in Marketo whose rows are not yet in the mirror."""
    return step["rows"] is None and bool(step.get("export_id"))


def load_progress(status: SyncStatus, now: datetime) -> LoadProgress | None:
    """The load's progress from the saved plan; None when no load has been planned."""
    plan = status.load_plan
    if not plan or status.load_started_at is None:
        return None
    jobs = [step for step in plan if "ids_to" not in step]
    done = [step for step in jobs if step.get("rows") is not None]
    jobs_in_flight = sum(1 for step in jobs if in_flight(step))
    finished_at = status.load_finished_at if status.load_status == "complete" else None
    elapsed = max(((finished_at or now) - status.load_started_at).total_seconds(), 0.0)
    jobs_done, jobs_total, rows = len(done), len(jobs), sum(step["rows"] for step in done)
    walk = next((step for step in plan if "ids_to" in step), None)
    if walk is not None:
        batches_done = math.ceil((walk["next_id"] - 1) / MAX_BATCH_SIZE)
        batches_total = batches_done if walk["rows"] is not None else max(
            batches_done + IDS_PAST_THE_END - walk["empty_batches"],
            math.ceil(walk["ids_to"] / MAX_BATCH_SIZE) + IDS_PAST_THE_END)
        jobs_done, jobs_total, rows = jobs_done + batches_done, jobs_total + batches_total, rows + walk["read"]
        # The walk's own pace: the export job before it took a minute for what is now one call.
        eta = (batches_total - batches_done) / walk.get("pace", WALK_CALLS_PER_SECOND)
    else:
        left = jobs_total - jobs_done
        eta = 0.0 if not left else (elapsed / jobs_done * left if jobs_done else None)
    return LoadProgress(
        source=status.load_source or WINDOWS_SOURCE, jobs_total=jobs_total, jobs_done=jobs_done,
        jobs_in_flight=jobs_in_flight, rows=rows, elapsed_seconds=elapsed, eta_seconds=eta,
    )


def log_progress(progress: LoadProgress) -> None:
    """The worker's event per export job applied, and every PROGRESS_EVERY seconds of a walk."""
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
                 list_ref: str | None = None, on_progress: Callable[[LoadProgress], None] = log_progress,
                 mode: str = "auto", calls_left: Callable[[], int | None] = lambda: None,
                 walk_calls_per_second: float = WALK_CALLS_PER_SECOND):
        self.store, self.marketo, self.owner, self.now, self.stop = store, marketo, owner, now, stop
        self.poll_seconds, self.lease_seconds, self.max_jobs = poll_seconds, lease_seconds, max(1, max_jobs)
        self.email_of = email_of  # the mirror's key of an address as Marketo holds it
        self.apply = apply  # writes the mirror's rows and the position together (MirrorSync._apply_changes)
        self.list_kind, self.list_ref = list_kind, list_ref
        self.on_progress = on_progress
        self.mode = mode  # GATEWAY_MIRROR_LOAD: "auto", "ids" or "windows"
        self.calls_left = calls_left  # the sync's share of today's budget still unspent; None: no limit
        self.walk_calls_per_second = walk_calls_per_second
        self.source = WINDOWS_SOURCE

    def plan_for(self, load_from: datetime, started: datetime) -> tuple[list[dict], str]:
        """A new load's plan and its source: one list job, or the createdAt windows (and maybe the ids)."""
        if self.list_kind is None or not self.list_ref:
            return window_plan(load_from, started), WINDOWS_SOURCE if self.mode == "windows" else UNDECIDED_SOURCE
        list_id = int(self.list_ref) if self.list_ref.isdigit() else self.marketo.list_id_by_name(
            self.list_kind, self.list_ref)
        return [{"list": self.list_kind, "list_id": list_id, "export_id": None, "rows": None}], \
            f"{self.list_kind} {list_id}"

    def run(self, status: SyncStatus, report) -> None:
        plan = [dict(step) for step in (status.load_plan or self._plan_of_an_older_load(status))]
        self.source = status.load_source or WINDOWS_SOURCE
        if self.source == UNDECIDED_SOURCE:
            plan = self._choose(plan)  # a worker that died after the newest window's rows chooses now
        self._start_jobs(plan)
        while any(step["rows"] is None for step in plan):
            walk = next((step for step in plan if "ids_to" in step and step["rows"] is None), None)
            if walk is not None:
                self._walk(plan, walk, report)
                continue
            if self.stop.wait(self.poll_seconds):
                raise SyncStopped()
            self.store.sync.renew_lease(self.owner, self.lease_seconds)
            plan = self._poll(plan, report)
            self._start_jobs(plan)
        self.store.sync.update(self.owner, load_status="complete", load_finished_at=self.now(), **self._position(plan))

    def _plan_of_an_older_load(self, status: SyncStatus) -> list[dict]:
        """A load begun before plans were saved: its remaining windows, its job in flight kept."""
        return window_plan(status.load_window_start, status.load_started_at, status.load_export_id)

    # export jobs ---------------------------------------------------------------------------------------------
    def _start_jobs(self, plan: list[dict]) -> None:
        running = sum(1 for step in plan if in_flight(step))
        waiting = [step for step in plan if step["rows"] is None and not step.get("export_id") and "ids_to" not in step]
        limit = self.max_jobs
        if self.source == UNDECIDED_SOURCE:  # only the newest windows, until one of them names the newest lead
            waiting, limit = waiting[::-1], min(limit, FRONTIER_JOBS)
        for step in waiting:
            if running >= limit:
                return
            step["export_id"] = self._create(step)
            step["queued"] = 1 + max((other.get("queued", 0) for other in plan), default=0)
            self._save(plan)
            running += 1
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

    def _poll(self, plan: list[dict], report) -> list[dict]:
        """Polls the jobs in flight in the order they were queued; the plan, changed when the load chose its way."""
        for step in sorted(filter(in_flight, plan), key=lambda step: step.get("queued", 0)):
            if not any(step is kept for kept in plan):
                continue  # dropped by the choice to walk the ids
            status = self.marketo.lead_export_status(step["export_id"]).get("status")
            if status == "Completed":
                plan = self._apply(plan, step, report)
            elif status == "Created":
                if not self._enqueue(step["export_id"]):
                    return plan
            elif status == "Queued":
                return plan  # Marketo starts queued jobs in order: the ones behind this one are queued too
            elif status != "Processing":
                # Forget the job so the next run starts this window again with a new one.
                step["export_id"] = None
                self._save(plan)
                raise MarketoUnavailable(f"Marketo's lead export ended {status or 'without a status'}")
        return plan

    def _apply(self, plan: list[dict], step: dict, report) -> list[dict]:
        rows = list(self.marketo.lead_export_rows(step["export_id"]))
        step["rows"] = len(rows)
        ids = [int(row["id"]) for row in rows if str(row.get("id", "")).isdigit()]
        if ids:
            step["max_id"] = max(ids)
        unsubscribed = self._unsubscribed(rows)
        self.apply(unsubscribed=unsubscribed, state=self._position(plan))
        report.loaded_windows += 1
        report.unsubscribed += len(unsubscribed)
        self._report_progress()
        if self.source == UNDECIDED_SOURCE:
            plan = self._choose(plan)
        return plan

    def _unsubscribed(self, rows) -> list[str]:
        return [email for row in rows if is_marketo_true(row.get("unsubscribed")) and (email := self.email_of(row.get("email")))]

    # the choice ----------------------------------------------------------------------------------------------
    def _choose(self, plan: list[dict]) -> list[dict]:
        """Once a window applied names the newest lead: walk the ids or export the other windows, whichever
        costs fewer calls (GATEWAY_MIRROR_LOAD may force either); the choice is saved with the plan."""
        newest = max((step["max_id"] for step in plan if step.get("max_id")), default=None)
        if newest is None and self.mode != "windows":
            return plan  # no lead in the windows exported yet: the next older ones go
        windows_left = sum(1 for step in plan if step["rows"] is None)
        by_windows = windows_left * CALLS_PER_EXPORT_JOB
        by_ids = math.ceil((newest or 0) / MAX_BATCH_SIZE) + IDS_PAST_THE_END
        left = self.calls_left()
        walk = newest is not None and (self.mode == "ids" or (
            by_ids <= by_windows and (left is None or by_ids <= left // 2)))
        emit("mirror.load_planned", way=IDS_SOURCE if walk else WINDOWS_SOURCE, newest_lead_id=newest,
             calls_by_ids=by_ids, calls_by_windows=by_windows, sync_calls_left=left, mode=self.mode)
        if walk:
            # Windows still in flight are dropped: their jobs end in Marketo unread.
            plan = [step for step in plan if step["rows"] is not None]
            plan.append({"ids_to": newest, "next_id": 1, "export_id": None, "empty_batches": 0, "read": 0, "rows": None,
                         "pace": self.walk_calls_per_second})
        self.source = IDS_SOURCE if walk else WINDOWS_SOURCE
        self._save(plan)
        return plan

    # the walk ------------------------------------------------------------------------------------------------
    def _walk(self, plan: list[dict], walk: dict, report) -> None:
        """Every lead by id, 300 a call, paced; the next id saved with each batch's rows."""
        gap = 1.0 / self.walk_calls_per_second
        next_call = reported = renewed = time.monotonic()
        while walk["rows"] is None:
            if self.stop.wait(max(next_call - time.monotonic(), 0.0)):
                raise SyncStopped()
            next_call = time.monotonic() + gap
            first = walk["next_id"]
            leads = self.marketo.leads_by_id(range(first, first + MAX_BATCH_SIZE), fields=EXPORT_FIELDS)
            walk["next_id"] = first + MAX_BATCH_SIZE
            walk["read"] += len(leads)
            walk["empty_batches"] = 0 if leads else walk["empty_batches"] + 1
            if walk["next_id"] > walk["ids_to"] and walk["empty_batches"] >= IDS_PAST_THE_END:
                walk["rows"] = walk["read"]
            unsubscribed = self._unsubscribed(leads)
            self.apply(unsubscribed=unsubscribed, state=self._position(plan))
            report.unsubscribed += len(unsubscribed)
            now = time.monotonic()
            if now - renewed >= self.lease_seconds / 3:
                self.store.sync.renew_lease(self.owner, self.lease_seconds)
                renewed = now
            if walk["rows"] is not None or now - reported >= PROGRESS_EVERY:
                self._report_progress()
                reported = now

    # the saved position --------------------------------------------------------------------------------------
    def _report_progress(self) -> None:
        progress = load_progress(self.store.sync.status(), self.now())
        if progress is not None:
            self.on_progress(progress)

    def _save(self, plan: list[dict]) -> None:
        self.store.sync.update(self.owner, **self._position(plan))

    def _position(self, plan: list[dict]) -> dict:
        """The plan and its way; and the start of the first window not yet applied (what the status showed
        before plans; none once the load walks the ids)."""
        state: dict = {"load_plan": [dict(step) for step in plan], "load_export_id": None, "load_source": self.source}
        windows = [step for step in plan if "start" in step]
        if self.source == IDS_SOURCE:
            state["load_window_start"] = None
        elif windows:
            first_open = next((step["start"] for step in windows if step["rows"] is None), windows[-1]["end"])
            state["load_window_start"] = datetime.fromisoformat(first_open)
        return state
