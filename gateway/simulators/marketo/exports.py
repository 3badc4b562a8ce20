"""Bulk Lead Extract: export jobs (Created, Queued, Processing, then Completed, Failed or
Canceled), their CSV files, and the ``/bulk/v1/leads/export/…`` endpoints."""
from __future__ import annotations

import csv
import hashlib
import io
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from flask import Response, request

from gateway.simulators.marketo.http import current_state
from gateway.simulators.marketo.protocol import SimError, iso, parse_datetime

if TYPE_CHECKING:
    from gateway.simulators.marketo.leads import Lead
    from gateway.simulators.marketo.lists import SimList

MAX_EXPORTS_PROCESSING = 2
MAX_EXPORTS_QUEUED = 10  # queued and processing together
MAX_EXPORT_SPAN = timedelta(days=31)
EXPORT_FILTER_TYPES = ("createdAt", "updatedAt", "staticListId", "staticListName", "smartListId", "smartListName")
DATE_FILTER_TYPES = ("createdAt", "updatedAt")
LIST_FILTER_TYPES = ("staticListId", "smartListId")
SIMULATED_FILTER_TYPES = DATE_FILTER_TYPES + LIST_FILTER_TYPES


@dataclass(frozen=True)
class ExportSpec:
    """What a Bulk Lead Extract job exports."""

    fields: tuple[str, ...]
    column_headers: tuple[str, ...]
    format: str
    filter_type: str  # "createdAt", "updatedAt", "staticListId" or "smartListId"
    start_at: datetime | None = None  # date filters
    end_at: datetime | None = None
    list_id: int | None = None  # list filters

    def selects(self, lead: Lead, chosen_list: SimList | None = None) -> bool:
        if self.list_id is not None:
            return chosen_list is not None and chosen_list.selects(lead)
        stamp = lead.created_at if self.filter_type == "createdAt" else lead.updated_at
        return self.start_at <= stamp <= self.end_at  # both ends inclusive


def _export_cell(value: Any) -> str:
    """A value as Marketo writes it in an export file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _render_export(spec: ExportSpec, leads: Iterable[Lead], chosen_list: SimList | None) -> tuple[bytes, int]:
    """The CSV file of a job (header row first) and its number of records."""
    chosen = sorted((lead for lead in leads if spec.selects(lead, chosen_list)), key=lambda lead: lead.id)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(spec.column_headers)
    for lead in chosen:
        writer.writerow([_export_cell(lead.get(name)) for name in spec.fields])
    return buffer.getvalue().encode("utf-8"), len(chosen)


@dataclass
class ExportJob:
    """One Bulk Lead Extract job: Created, Queued, Processing, then Completed,
    Failed or Canceled. Its file is written once, when it completes."""

    export_id: str
    spec: ExportSpec
    created_at: datetime
    status: str = "Created"
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    polls_while_processing: int = 0
    polled_at: list[datetime] = field(default_factory=list)  # every status poll, on the wall clock
    file: bytes | None = None
    number_of_records: int | None = None
    error_msg: str | None = None

    @property
    def active(self) -> bool:
        return self.status in ("Queued", "Processing")

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "exportId": self.export_id,
            "format": self.spec.format,
            "status": self.status,
            "createdAt": iso(self.created_at),
        }
        for key, stamp in (("queuedAt", self.queued_at), ("startedAt", self.started_at),
                           ("finishedAt", self.finished_at)):
            if stamp is not None:
                out[key] = iso(stamp)
        if self.file is not None:
            out["numberOfRecords"] = self.number_of_records
            out["fileSize"] = len(self.file)
            out["fileChecksum"] = "sha256:" + hashlib.sha256(self.file).hexdigest()
        if self.error_msg:
            out["errorMsg"] = self.error_msg
        return out


class ExportsMixin:
    """The export service of ``SimulatorState``: each status poll is one step of it."""

    _lock: threading.Lock
    wall_clock: Callable[[], datetime]
    export_polls_to_complete: int
    export_job_seconds: float | None  # set: a job processes this long on the wall clock, polled or not
    _leads: dict[int, Lead]
    _lists: dict[int, SimList]

    def _reset_exports_locked(self) -> None:
        self._exports: dict[str, ExportJob] = {}
        self._export_queue: list[str] = []  # queued export ids, oldest first
        self._exports_to_fail = 0

    def create_export(self, spec: ExportSpec) -> dict[str, Any]:
        """A new export job (status Created); its status."""
        with self._lock:
            job = ExportJob(export_id=str(uuid.uuid4()), spec=spec, created_at=self.wall_clock())
            self._exports[job.export_id] = job
            return job.describe()

    def enqueue_export(self, export_id: str) -> dict[str, Any]:
        """Queue a Created job (1029 when 10 jobs are queued or processing)."""
        with self._lock:
            job = self._export_locked(export_id)
            if self.export_job_seconds is not None:
                self._run_exports_until_locked(self.wall_clock())  # jobs done by now free their places
            if job.active:
                raise SimError("1029", "Job already queued")
            if job.status != "Created":
                raise SimError("1003", f"Export job is {job.status}, it cannot be enqueued")
            if sum(1 for j in self._exports.values() if j.active) >= MAX_EXPORTS_QUEUED:
                raise SimError("1029", "Too many jobs in queue")
            job.status, job.queued_at = "Queued", self.wall_clock()
            self._export_queue.append(export_id)
            if self.export_job_seconds is not None:
                self._run_exports_until_locked(job.queued_at)
            return job.describe()

    def export_status(self, export_id: str) -> dict[str, Any]:
        """A job's status. Each status poll is one step of the export service."""
        with self._lock:
            job = self._export_locked(export_id)
            job.polled_at.append(self.wall_clock())
            if self.export_job_seconds is None:
                self._step_exports_locked()
            else:
                self._run_exports_until_locked(self.wall_clock())
            return job.describe()

    def cancel_export(self, export_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._export_locked(export_id)
            if job.status not in ("Created", "Queued", "Processing"):
                raise SimError("1003", f"Export job is {job.status}, it cannot be canceled")
            if export_id in self._export_queue:
                self._export_queue.remove(export_id)
            job.status = "Canceled"
            return job.describe()

    def export_file(self, export_id: str) -> bytes | None:
        """The file of a Completed job; None for an unknown or unfinished job."""
        with self._lock:
            if self.export_job_seconds is not None:
                self._run_exports_until_locked(self.wall_clock())
            job = self._exports.get(export_id)
            return job.file if job is not None and job.status == "Completed" else None

    def exports(self) -> list[dict[str, Any]]:
        """The status of every export job, oldest first."""
        with self._lock:
            if self.export_job_seconds is not None:
                self._run_exports_until_locked(self.wall_clock())
            return [job.describe() for job in self._exports.values()]

    def export_history(self) -> list[ExportJob]:
        """Copies of every export job, oldest first, with when each was polled (for tests and benchmarks)."""
        with self._lock:
            if self.export_job_seconds is not None:
                self._run_exports_until_locked(self.wall_clock())
            return [replace(job, polled_at=list(job.polled_at)) for job in self._exports.values()]

    def fail_next_export(self, count: int = 1) -> None:
        """The next ``count`` jobs to finish end Failed (without a file)."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        with self._lock:
            self._exports_to_fail += count

    def _export_locked(self, export_id: str) -> ExportJob:
        job = self._exports.get(export_id)
        if job is None:
            raise SimError("1003", f"Export job '{export_id}' not found")
        return job

    def _export_counts_locked(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job in self._exports.values():
            counts[job.status] = counts.get(job.status, 0) + 1
        return counts

    def _step_exports_locked(self) -> None:
        """Start queued jobs in free slots (oldest first); every processing job moves
        on, and finishes after ``export_polls_to_complete`` steps."""
        processing = [j for j in self._exports.values() if j.status == "Processing"]
        free_slots = max(0, MAX_EXPORTS_PROCESSING - len(processing))
        starting, self._export_queue = self._export_queue[:free_slots], self._export_queue[free_slots:]
        for export_id in starting:
            job = self._exports[export_id]
            job.status, job.started_at = "Processing", self.wall_clock()
            processing.append(job)
        for job in processing:
            job.polls_while_processing += 1
            if job.polls_while_processing >= self.export_polls_to_complete:
                self._finish_export_locked(job)

    def _run_exports_until_locked(self, now: datetime) -> None:
        """The export service on the wall clock: a job processes ``export_job_seconds``; a slot that frees
        starts the oldest queued job at that moment, whether or not anybody polls."""
        duration = timedelta(seconds=self.export_job_seconds or 0.0)
        while True:
            processing = [j for j in self._exports.values() if j.status == "Processing"]
            while len(processing) < MAX_EXPORTS_PROCESSING and self._export_queue:
                job = self._exports[self._export_queue.pop(0)]
                job.status, job.started_at = "Processing", job.queued_at
                processing.append(job)
            due = [j for j in processing if j.started_at + duration <= now]
            if not due:
                return
            first = min(due, key=lambda j: j.started_at)
            finished_at = first.started_at + duration
            self._finish_export_locked(first, finished_at)
            if self._export_queue:
                successor = self._exports[self._export_queue.pop(0)]
                successor.status, successor.started_at = "Processing", max(successor.queued_at, finished_at)

    def _finish_export_locked(self, job: ExportJob, finished_at: datetime | None = None) -> None:
        job.finished_at = finished_at or self.wall_clock()
        if self._exports_to_fail:
            self._exports_to_fail -= 1
            job.status, job.error_msg = "Failed", "Export failed (simulated fault)"
            return
        chosen_list = self._lists.get(job.spec.list_id) if job.spec.list_id is not None else None
        job.file, job.number_of_records = _render_export(job.spec, self._leads.values(), chosen_list)
        job.status = "Completed"


# ------------------------------------------------------------------- views
def _json_request_body() -> dict[str, Any]:
    if request.mimetype != "application/json":
        raise SimError("612", "Invalid Content Type")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise SimError("609", "Invalid JSON")
    return body


def _export_fields(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(f, str) and f.strip() for f in raw):
        raise SimError("1003", "fields must be a non-empty array of field names")
    return tuple(f.strip() for f in raw)


def _export_format(raw: Any) -> str:
    fmt = "CSV" if raw is None else raw
    if fmt != "CSV":
        raise SimError("1003", f"Invalid format '{raw}' (the simulator writes CSV only)")
    return fmt


def _column_headers(fields: tuple[str, ...], raw: Any) -> tuple[str, ...]:
    if raw is None:
        return fields
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise SimError("1003", "columnHeaderNames must map field names to strings")
    return tuple(raw.get(name, name) for name in fields)


def _export_filter(raw: Any, supported: frozenset[str]) -> tuple[str, Any]:
    """The one filter of a job: its type and value."""
    if not isinstance(raw, dict) or not raw:
        raise SimError("1003", "filter not specified")
    if len(raw) > 1:
        raise SimError("1003", "Only one filter type may be specified per export job")
    ((filter_type, value),) = raw.items()
    if filter_type not in EXPORT_FILTER_TYPES:
        raise SimError("1003", f"Invalid filter type '{filter_type}'")
    if filter_type not in supported:
        raise SimError("1035")
    return filter_type, value


def _list_id(filter_type: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SimError("1003", f"{filter_type} must be a list id (an integer)")
    kind = filter_type.removesuffix("Id")
    if current_state().list_by_id(kind, value) is None:
        raise SimError("1003", f"{filter_type} {value} not found")
    return value


def _date_range(filter_type: str, value: Any) -> tuple[datetime, datetime]:
    if not isinstance(value, dict):
        raise SimError("1003", f"{filter_type} needs startAt and endAt")
    start_at, end_at = parse_datetime(value.get("startAt")), parse_datetime(value.get("endAt"))
    if start_at is None or end_at is None:
        raise SimError("1003", f"{filter_type}: startAt and endAt must be ISO 8601 datetimes")
    if end_at < start_at:
        raise SimError("1003", f"{filter_type}: endAt is before startAt")
    if end_at - start_at > MAX_EXPORT_SPAN:
        raise SimError("1003", f"{filter_type}: the date range must be {MAX_EXPORT_SPAN.days} days or fewer")
    return start_at, end_at


def _export_spec(body: Mapping[str, Any], supported_filters: frozenset[str]) -> ExportSpec:
    fields = _export_fields(body.get("fields"))
    filter_type, value = _export_filter(body.get("filter"), supported_filters)
    if filter_type in LIST_FILTER_TYPES:
        selection: dict[str, Any] = {"list_id": _list_id(filter_type, value)}
    else:
        start_at, end_at = _date_range(filter_type, value)
        selection = {"start_at": start_at, "end_at": end_at}
    return ExportSpec(
        fields=fields,
        column_headers=_column_headers(fields, body.get("columnHeaderNames")),
        format=_export_format(body.get("format")),
        filter_type=filter_type,
        **selection,
    )


def export_create_view() -> dict[str, Any]:
    state = current_state()
    spec = _export_spec(_json_request_body(), state.export_filters_supported)
    return {"result": [state.create_export(spec)]}


def export_enqueue_view(export_id: str) -> dict[str, Any]:
    return {"result": [current_state().enqueue_export(export_id)]}


def export_status_view(export_id: str) -> dict[str, Any]:
    return {"result": [current_state().export_status(export_id)]}


def export_cancel_view(export_id: str) -> dict[str, Any]:
    return {"result": [current_state().cancel_export(export_id)]}


def export_file_view(export_id: str) -> Response:
    # As Marketo: an unknown or unfinished job is a plain-text 404, not an envelope.
    state = current_state()
    data = state.export_file(export_id)
    if data is None:
        state._count_error(404)
        return Response("Export file not found or not ready\n", status=404, mimetype="text/plain")
    return _ranged_response(data, "text/csv")


def _ranged_response(data: bytes, mimetype: str) -> Response:
    """``data``, or the part a single ``Range: bytes=…`` asks for (206; 416 if unsatisfiable)."""
    requested = request.range
    if requested is None or len(requested.ranges) != 1:
        response = Response(data, mimetype=mimetype)
    else:
        bounds = requested.range_for_length(len(data))
        if bounds is None:
            response = Response(b"", status=416, mimetype=mimetype)
            response.headers["Content-Range"] = f"bytes */{len(data)}"
        else:
            start, stop = bounds
            response = Response(data[start:stop], status=206, mimetype=mimetype)
            response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
    response.headers["Accept-Ranges"] = "bytes"
    return response
