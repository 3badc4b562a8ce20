"""A small Marketo Engage simulator: a Flask app that speaks the documented protocol.

Used by the integration tests (over real HTTP), the benchmark and the demo mode.
It reproduces what the gate depends on (see docs/marketo-api.md):

* ``/identity/oauth/token`` (client credentials in the query string, one token
  per client reused until it expires);
* ``/rest/v1/leads.json`` by ``email`` or ``id`` (GET, or ``POST ?_method=GET``
  with a form body), ``fields``, ``batchSize`` and ``nextPageToken`` paging;
* the envelope (``requestId``, ``success``, ``result`` / ``errors`` with string
  codes, HTTP 200), HTTP 414 for a URL over 8 KB and 413 for a body over 1 MB;
* the activity stream: ``/rest/v1/activities/types.json``,
  ``activities/pagingtoken.json``, ``activities.json`` (by type) and
  ``activities/leadchanges.json`` (by changed field), fed by an activity log that
  every change of the simulated database appends to;
* Bulk Lead Extract: ``/bulk/v1/leads/export/create.json``, ``…/enqueue.json``,
  ``…/status.json``, ``…/file.json`` (with ``Range``) and ``…/cancel.json``;
* the instance limits (606 rate, 615 concurrency, 607 daily quota);
* injected faults (error codes, bare HTTP statuses, latency, failed export jobs)
  and a control API under ``/_sim/`` for out-of-process use.

Order in which a REST call is judged: 615 (concurrency), 606 (rate window),
607 (daily quota), then an injected fault (latency, then code or HTTP status),
then authentication (600/601/602), then the endpoint itself. Calls rejected by
615/606 do not enter the rate window or the quota and do not consume a fault.

Run it standalone with ``python -m gateway.marketo.simulator --port 8101 --seed demo``.
"""
from __future__ import annotations

import argparse
import base64
import csv
import functools
import hashlib
import io
import itertools
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.serving import WSGIRequestHandler, make_server

try:  # Marketo's daily quota resets at 12:00 AM US Central.
    from zoneinfo import ZoneInfo

    _QUOTA_TZ: Any = ZoneInfo("America/Chicago")
except Exception:  # pragma: no cover - no tz database at all
    _QUOTA_TZ = timezone(timedelta(hours=-6))

__all__ = [
    "RunningSimulator",
    "SimulatorState",
    "create_simulator_app",
    "main",
    "seed_demo",
    "start_simulator",
]

MAX_FILTER_VALUES = 300
MAX_BATCH_SIZE = 300
MAX_MATCHES = 1000
MAX_URI_BYTES = 8192
MAX_BODY_BYTES = 1024 * 1024
MAX_ACTIVITY_TYPE_IDS = 10
FIRST_ACTIVITY_ID = 1001
MAX_EXPORTS_PROCESSING = 2
MAX_EXPORTS_QUEUED = 10  # queued and processing together
MAX_EXPORT_SPAN = timedelta(days=31)
EXPORT_FILTER_TYPES = ("createdAt", "updatedAt", "staticListId", "staticListName", "smartListId", "smartListName")
DATE_FILTER_TYPES = ("createdAt", "updatedAt")

DEFAULT_FIELDS = ("id", "email", "firstName", "lastName", "updatedAt", "createdAt")

ERROR_MESSAGES = {
    "600": "Access token not specified",
    "601": "Access token invalid",
    "602": "Access token expired",
    "603": "Access denied",
    "604": "Request time-out",
    "605": "HTTP Method not supported",
    "606": "Max rate limit '100' exceeded with in '20' secs",
    "607": "Daily quota reached",
    "608": "API Temporarily Unavailable",
    "609": "Invalid JSON",
    "610": "Requested resource not found",
    "611": "System error",
    "612": "Invalid Content Type",
    "613": "Invalid Multipart Request",
    "614": "Invalid Subscription",
    "615": "Concurrent access limit reached",
    "616": "Invalid subscription type",
    "701": "Cannot be blank",
    "702": "No data found for given search scenario",
    "703": "The feature is not enabled for the subscription",
    "704": "Invalid date format",
    "709": "Business Rule Violation",
    "710": "Parent Folder Not Found",
    "711": "Incompatible Folder Type",
    "712": "Merge operation invalid to person account",
    "713": "Transient Error",
    "714": "Unable to find the default record type",
    "718": "ExternalSalesPersonID not found",
    "1003": "Invalid data",
    "1006": "Field not found",
    "1029": "Too many jobs in queue",
    "1035": "Unsupported filter type for target subscription",
}

# Lead fields the simulator knows, with the value a fresh lead has. Any other
# requested field comes back as null ("a field not set is null").
_ATTRIBUTE_DEFAULTS: dict[str, Any] = {
    "firstName": None,
    "lastName": None,
    "unsubscribedReason": None,
    "emailInvalid": False,
    "emailInvalidCause": None,
    "marketingSuspended": False,
    "blackListed": False,
}


class SimError(Exception):
    """A Marketo error answered as HTTP 200 ``success: false``."""

    def __init__(self, code: str, message: str | None = None):
        self.code = str(code)
        self.message = message or ERROR_MESSAGES.get(self.code, "Error")
        super().__init__(f"{self.code} {self.message}")


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _fmt_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _as_utc(dt: datetime) -> datetime:
    """An aware UTC datetime (a naive one is taken as UTC)."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def _parse_datetime(value: Any) -> datetime | None:
    """An ISO 8601 date or datetime (``Z`` or an offset; none = UTC), or None if it is not one."""
    if isinstance(value, datetime):
        return _as_utc(value)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return _as_utc(datetime.fromisoformat(value.strip()))
    except ValueError:
        return None


def _as_text(value: Any) -> str | None:
    """A field value as Marketo writes it in activities: strings, booleans as true/false."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class Lead:
    """One Marketo person. Several leads may share an email."""

    id: int
    email: str
    unsubscribed: bool
    created_at: datetime
    updated_at: datetime
    attributes: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        if name == "id":
            return self.id
        if name == "email":
            return self.email
        if name == "unsubscribed":
            return self.unsubscribed
        if name == "createdAt":
            return _iso(self.created_at)
        if name == "updatedAt":
            return _iso(self.updated_at)
        if name in self.attributes:
            return self.attributes[name]
        return _ATTRIBUTE_DEFAULTS.get(name)

    def project(self, fields: Iterable[str]) -> dict[str, Any]:
        return {name: self.get(name) for name in fields}

    def snapshot(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "email": self.email,
            "unsubscribed": self.unsubscribed,
            "createdAt": _iso(self.created_at),
            "updatedAt": _iso(self.updated_at),
        }
        out.update(self.attributes)
        return out


# ------------------------------------------------------------ activity model
VISIT_WEBPAGE = "Visit Webpage"
UNSUBSCRIBE_EMAIL = "Unsubscribe Email"
NEW_LEAD = "New Lead"
CHANGE_DATA_VALUE = "Change Data Value"


@dataclass(frozen=True)
class ActivityType:
    """One activity type as ``types.json`` describes it; the id varies by subscription."""

    name: str
    default_id: int
    description: str
    primary_attribute: tuple[str, str]  # (name, dataType)
    attributes: tuple[tuple[str, str], ...] = ()

    def describe(self, type_id: int) -> dict[str, Any]:
        name, data_type = self.primary_attribute
        return {
            "id": type_id,
            "name": self.name,
            "description": self.description,
            "primaryAttribute": {"name": name, "dataType": data_type},
            "attributes": [{"name": n, "dataType": t} for n, t in self.attributes],
        }


_WEB_ATTRIBUTES = (
    ("Client IP Address", "string"),
    ("Query Parameters", "string"),
    ("Referrer URL", "string"),
    ("User Agent", "string"),
)
_MAIL_ATTRIBUTES = (("Campaign Run ID", "integer"), ("Choice Number", "integer"), ("Step ID", "integer"))

ACTIVITY_TYPES: tuple[ActivityType, ...] = (
    ActivityType(VISIT_WEBPAGE, 1, "User visits a web page", ("Webpage ID", "integer"),
                 _WEB_ATTRIBUTES + (("Webpage URL", "string"),)),
    ActivityType("Fill Out Form", 2, "User fills out and submits form on web page", ("Webform ID", "integer"),
                 _WEB_ATTRIBUTES + (("Form Fields", "text"), ("Webpage ID", "integer"))),
    ActivityType("Send Email", 6, "Send Marketo Email to a person", ("Mail ID", "integer"), _MAIL_ATTRIBUTES),
    ActivityType("Email Delivered", 7, "Marketo Email is delivered to a person", ("Mail ID", "integer"),
                 _MAIL_ATTRIBUTES),
    ActivityType(UNSUBSCRIBE_EMAIL, 9, "Person unsubscribes from Marketo Emails", ("Mail ID", "integer"),
                 _WEB_ATTRIBUTES + (("Mailing ID", "integer"), ("Webform ID", "integer"))),
    ActivityType("Open Email", 10, "User opens Marketo Email", ("Mail ID", "integer"),
                 _MAIL_ATTRIBUTES + (("Device", "string"),)),
    ActivityType("Click Email", 11, "User clicks on a link in a Marketo Email", ("Mail ID", "integer"),
                 _MAIL_ATTRIBUTES + (("Link", "string"),)),
    ActivityType(NEW_LEAD, 12, "New person/record is added to the lead database", ("Lead ID", "integer"),
                 (("Source Type", "string"), ("Created Date", "date"))),
    ActivityType(CHANGE_DATA_VALUE, 13, "Changed attribute value for a person", ("Attribute Name", "integer"),
                 (("New Value", "string"), ("Old Value", "string"), ("Reason", "string"))),
)

# The email whose unsubscribe link the simulated people click: (Mail ID, name).
UNSUBSCRIBE_MAIL = (1001, "Sales Outreach.Email")

# Lead fields by REST name: (field id, display name), as a lead describe gives them.
LEAD_FIELD_INFO: dict[str, tuple[int, str]] = {
    "email": (2, "Email Address"),
    "firstName": (31, "First Name"),
    "lastName": (32, "Last Name"),
    "emailInvalid": (56, "Email Invalid"),
    "emailInvalidCause": (57, "Email Invalid Cause"),
    "unsubscribed": (58, "Unsubscribed"),
    "unsubscribedReason": (59, "Unsubscribed Reason"),
    "marketingSuspended": (60, "Marketing Suspended"),
    "blackListed": (61, "Blocklisted"),
}


def _field_info(name: str) -> tuple[int, str]:
    return LEAD_FIELD_INFO.get(name, (0, name))


def _resolve_activity_type_ids(overrides: Mapping[str, int] | None) -> dict[str, int]:
    """Type name -> id: the defaults, with ``overrides`` (by type name) applied."""
    ids = {t.name: t.default_id for t in ACTIVITY_TYPES}
    for name, type_id in (overrides or {}).items():
        if name not in ids:
            raise ValueError(f"unknown activity type {name!r} (known: {sorted(ids)})")
        if isinstance(type_id, bool) or not isinstance(type_id, int) or type_id < 1:
            raise ValueError(f"activity type id for {name!r} must be a positive integer")
        ids[name] = type_id
    if len(set(ids.values())) != len(ids):
        raise ValueError("activity type ids must be unique")
    return ids


@dataclass(frozen=True)
class FieldChange:
    """What a Change Data Value activity changed (values as strings)."""

    field_id: int
    name: str  # REST name
    new_value: str | None
    old_value: str | None

    def describe(self) -> dict[str, Any]:
        return {"id": self.field_id, "name": self.name, "newValue": self.new_value, "oldValue": self.old_value}


@dataclass(frozen=True)
class Activity:
    """One entry of the activity log."""

    id: int
    lead_id: int
    date: datetime
    type_name: str
    type_id: int
    primary_value_id: int | None = None
    primary_value: str | None = None
    attributes: tuple[tuple[str, Any], ...] = ()
    change: FieldChange | None = None

    def _head(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "marketoGUID": str(self.id),
            "leadId": self.lead_id,
            "activityDate": _iso(self.date),
            "activityTypeId": self.type_id,
        }

    def _attribute_list(self) -> list[dict[str, Any]]:
        # Marketo leaves out an attribute that has no value.
        return [{"name": n, "value": v} for n, v in self.attributes if v is not None]

    def as_activity(self) -> dict[str, Any]:
        """As ``activities.json`` returns it."""
        return {
            **self._head(),
            "primaryAttributeValueId": self.primary_value_id,
            "primaryAttributeValue": self.primary_value,
            "attributes": self._attribute_list(),
        }

    def as_lead_change(self) -> dict[str, Any]:
        """As ``activities/leadchanges.json`` returns it."""
        return {
            **self._head(),
            "fields": [self.change.describe()] if self.change else [],
            "attributes": self._attribute_list(),
        }


@dataclass(frozen=True)
class ActivityPage:
    """One page of ``activities.json`` or ``leadchanges.json``."""

    result: list[dict[str, Any]]
    next_page_token: str
    more_result: bool

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.result:  # Marketo leaves ``result`` out of an empty page
            out["result"] = self.result
        out["nextPageToken"] = self.next_page_token
        out["moreResult"] = self.more_result
        return out


def _activity_token(position: int, tag: str) -> str:
    """An opaque paging token for a position in the activity log of one state."""
    return base64.b32encode(f"act:{tag}:{position}".encode()).decode()


def _activity_token_position(token: str, tag: str) -> int | None:
    try:
        padded = token.strip() + "=" * (-len(token.strip()) % 8)
        kind, token_tag, position = base64.b32decode(padded).decode().split(":")
        if kind != "act" or token_tag != tag:
            return None
        return int(position)
    except Exception:
        return None


# ---------------------------------------------------------- bulk export model
@dataclass(frozen=True)
class ExportSpec:
    """What a Bulk Lead Extract job exports."""

    fields: tuple[str, ...]
    column_headers: tuple[str, ...]
    format: str
    filter_type: str  # "createdAt" or "updatedAt"
    start_at: datetime
    end_at: datetime

    def selects(self, lead: Lead) -> bool:
        stamp = lead.created_at if self.filter_type == "createdAt" else lead.updated_at
        return self.start_at <= stamp <= self.end_at  # both ends inclusive


def _export_cell(value: Any) -> str:
    """A value as Marketo writes it in an export file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _render_export(spec: ExportSpec, leads: Iterable[Lead]) -> tuple[bytes, int]:
    """The CSV file of a job (header row first) and its number of records."""
    chosen = sorted((lead for lead in leads if spec.selects(lead)), key=lambda lead: lead.id)
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
            "createdAt": _iso(self.created_at),
        }
        for key, stamp in (("queuedAt", self.queued_at), ("startedAt", self.started_at),
                           ("finishedAt", self.finished_at)):
            if stamp is not None:
                out[key] = _iso(stamp)
        if self.file is not None:
            out["numberOfRecords"] = self.number_of_records
            out["fileSize"] = len(self.file)
            out["fileChecksum"] = "sha256:" + hashlib.sha256(self.file).hexdigest()
        if self.error_msg:
            out["errorMsg"] = self.error_msg
        return out


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


class SimulatorState:
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
        wall_clock: Callable[[], datetime] = _utcnow,
        activity_type_ids: Mapping[str, int] | None = None,
        export_polls_to_complete: int = 2,
        export_filters_supported: Iterable[str] = ("createdAt",),
    ):
        """``activity_type_ids`` overrides type ids by name (``{"Unsubscribe Email": 2009}``);
        an export job completes on the ``export_polls_to_complete``-th status poll once
        it is processing; ``export_filters_supported`` are the Bulk Lead Extract filters
        this subscription has (others answer 1035; only date filters are simulated)."""
        if isinstance(export_polls_to_complete, bool) or not isinstance(export_polls_to_complete, int) \
                or export_polls_to_complete < 1:
            raise ValueError("export_polls_to_complete must be a positive integer")
        filters = frozenset(export_filters_supported)
        if not filters <= set(DATE_FILTER_TYPES):
            raise ValueError(f"only {DATE_FILTER_TYPES} filters are simulated")
        self.activity_type_ids = _resolve_activity_type_ids(activity_type_ids)
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

    # ----------------------------------------------------------------- state
    def _reset_locked(self) -> None:
        self._leads: dict[int, Lead] = {}
        self._by_email: dict[str, list[int]] = {}
        self._next_id = 1
        self._tokens: dict[str, float] = {}  # token -> expiry on self.clock
        self._current_token: str | None = None
        self._faults: dict[str, list[Fault]] = {"rest": [], "identity": []}
        self._window: deque[float] = deque()
        self._quota_day: date | None = None
        self._quota_used = 0
        self._calls: dict[str, int] = {"token": 0, "leads": 0}
        self._rest_calls = 0
        self._rejected: dict[str, int] = {}
        self._errors: dict[str, int] = {}
        self._faults_served = 0
        self._max_in_flight = 0
        self._max_window_calls = 0
        self._activities: list[Activity] = []
        self._next_activity_id = FIRST_ACTIVITY_ID
        self._token_tag = secrets.token_hex(4)  # paging tokens of an earlier state are foreign
        self._exports: dict[str, ExportJob] = {}
        self._export_queue: list[str] = []  # queued export ids, oldest first
        self._exports_to_fail = 0
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

    # ----------------------------------------------------------------- leads
    def add_lead(
        self,
        email: str,
        *,
        unsubscribed: bool = False,
        lead_id: int | None = None,
        attributes: Mapping[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> int:
        """Add one lead and return its id; logs a New Lead activity dated ``created_at``
        (default: now on ``wall_clock``). Several leads may share an email."""
        with self._lock:
            return self._add_lead_locked(email, unsubscribed, lead_id, attributes, created_at)

    def add_leads(self, leads: Iterable[Mapping[str, Any]]) -> list[int]:
        """Add many leads at once: each a mapping with ``email`` and optionally
        ``unsubscribed``, ``id``, ``createdAt`` (ISO 8601 or datetime) and other lead fields."""
        specs = [self._lead_spec(item) for item in leads]
        with self._lock:
            taken = [s[2] for s in specs if s[2] is not None]
            clash = [i for i in taken if i in self._leads]
            if clash or len(set(taken)) != len(taken):
                raise ValueError(f"lead id already used: {clash or taken}")
            return [self._add_lead_locked(*spec) for spec in specs]

    @staticmethod
    def _lead_spec(
        item: Mapping[str, Any],
    ) -> tuple[str, bool, int | None, dict[str, Any], datetime | None]:
        if not isinstance(item, Mapping):
            raise ValueError("each lead must be an object")
        email = item.get("email")
        if not isinstance(email, str) or not email.strip():
            raise ValueError("each lead needs an email")
        unsubscribed = item.get("unsubscribed", False)
        if not isinstance(unsubscribed, bool):
            raise ValueError("unsubscribed must be a boolean")
        lead_id = item.get("id")
        if lead_id is not None and (isinstance(lead_id, bool) or not isinstance(lead_id, int)):
            raise ValueError("id must be an integer")
        created_at = None
        if item.get("createdAt") is not None:
            created_at = _parse_datetime(item["createdAt"])
            if created_at is None:
                raise ValueError("createdAt must be an ISO 8601 datetime")
        extra = {k: v for k, v in item.items() if k not in ("email", "unsubscribed", "id")}
        for reserved in ("createdAt", "updatedAt"):
            extra.pop(reserved, None)
        return email, unsubscribed, lead_id, extra, created_at

    def _add_lead_locked(
        self,
        email: str,
        unsubscribed: bool,
        lead_id: int | None,
        attributes: Mapping[str, Any] | None,
        created_at: datetime | None = None,
    ) -> int:
        if lead_id is None:
            lead_id = self._next_id
        elif lead_id in self._leads:
            raise ValueError(f"lead id {lead_id} already used")
        self._next_id = max(self._next_id, lead_id + 1)
        created = _as_utc(created_at) if created_at is not None else self.wall_clock()
        lead = Lead(
            id=lead_id,
            email=email,
            unsubscribed=bool(unsubscribed),
            created_at=created,
            updated_at=created,
            attributes=dict(attributes or {}),
        )
        self._leads[lead_id] = lead
        self._by_email.setdefault(email.strip().lower(), []).append(lead_id)
        self._log_new_lead_locked(lead)
        return lead_id

    def unsubscribe(self, email: str, reason: str = "Unsubscribed via email link") -> int:
        """A person clicks an email's unsubscribe link. Durable unsubscribe: every lead
        with this email (case-insensitive) gets ``unsubscribed`` true, and each lead
        that changed logs an Unsubscribe Email and a Change Data Value activity.
        Returns how many leads changed."""
        with self._lock:
            changed = [lead for lead in self._leads_by_email_locked(email) if not lead.unsubscribed]
            for lead in changed:
                self._log_unsubscribe_email_locked(lead)
                self._change_locked(lead, "unsubscribed", True, reason=reason)
            return len(changed)

    def resubscribe(self, email: str, reason: str = "Resubscribed") -> int:
        """Set ``unsubscribed`` false on every lead with this email; each lead that
        changed logs a Change Data Value activity. Returns how many leads changed."""
        with self._lock:
            changed = [lead for lead in self._leads_by_email_locked(email) if lead.unsubscribed]
            for lead in changed:
                self._change_locked(lead, "unsubscribed", False, reason=reason)
            return len(changed)

    def set_unsubscribed(self, email: str, unsubscribed: bool) -> int:
        """``unsubscribe(email)`` or ``resubscribe(email)``. Returns how many leads changed."""
        return self.unsubscribe(email) if unsubscribed else self.resubscribe(email)

    def change_email(self, lead_id: int, new_email: str, reason: str = "Web service API") -> bool:
        """Give one lead a new email (logs a Change Data Value for ``email``).
        Returns whether it changed."""
        if not isinstance(new_email, str) or not new_email.strip():
            raise ValueError("the new email must not be empty")
        with self._lock:
            lead = self._leads.get(lead_id)
            if lead is None:
                raise ValueError(f"no lead with id {lead_id}")
            if lead.email == new_email:
                return False
            self._change_locked(lead, "email", new_email, reason=reason)
            return True

    def _change_locked(self, lead: Lead, name: str, value: Any, *, reason: str = "Web service API") -> None:
        """Every change of a lead field goes through here: it logs a Change Data Value."""
        old_value = lead.get(name)
        if name == "unsubscribed":
            lead.unsubscribed = value
        elif name == "email":
            old_key = lead.email.strip().lower()
            self._by_email[old_key].remove(lead.id)
            if not self._by_email[old_key]:
                del self._by_email[old_key]
            lead.email = value
            self._by_email.setdefault(value.strip().lower(), []).append(lead.id)
        else:
            lead.attributes[name] = value
        lead.updated_at = self.wall_clock()
        self._log_field_change_locked(lead, name, old_value, value, reason)

    def _leads_by_email_locked(self, email: str) -> list[Lead]:
        return [self._leads[i] for i in self._by_email.get(email.strip().lower(), ())]

    def leads(self, email: str | None = None) -> list[dict[str, Any]]:
        """Snapshots of the stored leads (all, or those with ``email``), by id."""
        with self._lock:
            if email is None:
                chosen = list(self._leads.values())
            else:
                chosen = self._leads_by_email_locked(email)
            return [lead.snapshot() for lead in sorted(chosen, key=lambda lead: lead.id)]

    def query_leads(
        self, filter_type: str, values: list[str], fields: list[str]
    ) -> list[dict[str, Any]]:
        """Leads matching ``filterType``/``filterValues``, projected on ``fields``, by id.
        Raises SimError 1003 for an unknown filter type, bad ids or too many matches."""
        kind = filter_type.lower()
        with self._lock:
            matched: dict[int, Lead] = {}
            if kind == "email":
                for value in values:
                    for lead in self._leads_by_email_locked(value):
                        matched[lead.id] = lead
            elif kind == "id":
                for value in values:
                    try:
                        lead_id = int(value)
                    except ValueError:
                        raise SimError("1003", f"Invalid value '{value}' for filterType 'id'") from None
                    if lead_id in self._leads:
                        matched[lead_id] = self._leads[lead_id]
            else:
                raise SimError("1003", f"Invalid filterType '{filter_type}'")
            if len(matched) > MAX_MATCHES:
                raise SimError("1003", f"Too many results match the filter (more than {MAX_MATCHES})")
            return [matched[i].project(fields) for i in sorted(matched)]

    # ------------------------------------------------------------ activities
    def activity_types(self) -> list[dict[str, Any]]:
        """The ``types.json`` result, with this subscription's ids, by id."""
        described = [t.describe(self.activity_type_ids[t.name]) for t in ACTIVITY_TYPES]
        return sorted(described, key=lambda t: t["id"])

    def activity_type_id(self, name: str) -> int:
        return self.activity_type_ids[name]

    def add_activity(
        self,
        lead_id: int,
        type_name: str,
        *,
        primary_attribute_value_id: int | None = None,
        primary_attribute_value: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> int:
        """Log an activity that changes nothing (a page visit, an email opened, …).
        Returns its id."""
        if type_name not in self.activity_type_ids:
            raise ValueError(f"unknown activity type {type_name!r}")
        with self._lock:
            if lead_id not in self._leads:
                raise ValueError(f"no lead with id {lead_id}")
            activity = self._log_locked(
                lead_id, type_name,
                primary_value_id=primary_attribute_value_id,
                primary_value=primary_attribute_value,
                attributes=tuple((attributes or {}).items()),
            )
            return activity.id

    def visit_webpage(self, lead_id: int, url: str = "www.example.com/pricing.html") -> int:
        """A Visit Webpage activity: noise between the activities the gate reads."""
        return self.add_activity(
            lead_id, VISIT_WEBPAGE, primary_attribute_value_id=71, primary_attribute_value=url,
            attributes={"Client IP Address": "203.0.113.7", "Webpage URL": "/" + url.partition("/")[2]},
        )

    def activities(self, lead_id: int | None = None) -> list[dict[str, Any]]:
        """The activity log (all, or one lead's) as ``activities.json`` items, by id."""
        with self._lock:
            chosen = [a for a in self._activities if lead_id is None or a.lead_id == lead_id]
            return [a.as_activity() for a in chosen]

    def paging_token(self, since: datetime) -> str:
        """A token for the first activity (in id order) dated at or after ``since``."""
        since = _as_utc(since)
        with self._lock:
            position = next(
                (i for i, a in enumerate(self._activities) if a.date >= since), len(self._activities)
            )
            return _activity_token(position, self._token_tag)

    def activity_page(self, token: str, type_ids: Iterable[int], batch_size: int) -> ActivityPage:
        """The ``activities.json`` page after ``token``: activities of ``type_ids``."""
        wanted = set(type_ids)
        unknown = sorted(wanted - set(self.activity_type_ids.values()))
        if unknown:
            raise SimError("1003", f"Invalid activityTypeIds: {unknown}")
        with self._lock:
            return self._page_locked(token, batch_size, lambda a: a.type_id in wanted, Activity.as_activity)

    def lead_change_page(self, token: str, fields: Iterable[str], batch_size: int) -> ActivityPage:
        """The ``leadchanges.json`` page after ``token``: New Lead activities, and Change
        Data Value activities of one of ``fields`` (REST names, case-insensitive)."""
        wanted = {name.lower() for name in fields}

        def is_lead_change(activity: Activity) -> bool:
            if activity.type_name == NEW_LEAD:
                return True
            return activity.change is not None and activity.change.name.lower() in wanted

        with self._lock:
            return self._page_locked(token, batch_size, is_lead_change, Activity.as_lead_change)

    def _page_locked(
        self,
        token: str,
        batch_size: int,
        keep: Callable[[Activity], bool],
        render: Callable[[Activity], dict[str, Any]],
    ) -> ActivityPage:
        # Like Marketo, a page examines at most batch_size activities of any type, so a
        # page may be short (even empty) while moreResult is true.
        start = self._token_position_locked(token)
        examined = self._activities[start : start + batch_size]
        end = start + len(examined)
        return ActivityPage(
            result=[render(a) for a in examined if keep(a)],
            next_page_token=_activity_token(end, self._token_tag),
            more_result=end < len(self._activities),
        )

    def _token_position_locked(self, token: str) -> int:
        position = _activity_token_position(token, self._token_tag)
        if position is None or not 0 <= position <= len(self._activities):
            raise SimError("1003", "Invalid nextPageToken")
        return position

    def _log_locked(
        self,
        lead_id: int,
        type_name: str,
        *,
        date: datetime | None = None,
        primary_value_id: int | None = None,
        primary_value: str | None = None,
        attributes: tuple[tuple[str, Any], ...] = (),
        change: FieldChange | None = None,
    ) -> Activity:
        activity = Activity(
            id=self._next_activity_id,
            lead_id=lead_id,
            date=date if date is not None else self.wall_clock(),
            type_name=type_name,
            type_id=self.activity_type_ids[type_name],
            primary_value_id=primary_value_id,
            primary_value=primary_value,
            attributes=attributes,
            change=change,
        )
        self._next_activity_id += 1
        self._activities.append(activity)
        return activity

    def _log_new_lead_locked(self, lead: Lead) -> None:
        self._log_locked(
            lead.id, NEW_LEAD, date=lead.created_at, primary_value_id=lead.id, primary_value=lead.email,
            attributes=(("Source Type", "Web service API"), ("Created Date", lead.created_at.date().isoformat())),
        )

    def _log_unsubscribe_email_locked(self, lead: Lead) -> None:
        mail_id, mail_name = UNSUBSCRIBE_MAIL
        self._log_locked(
            lead.id, UNSUBSCRIBE_EMAIL, primary_value_id=mail_id, primary_value=mail_name,
            attributes=(("Client IP Address", "203.0.113.7"), ("User Agent", "Mozilla/5.0 (simulated)"),
                        ("Mailing ID", mail_id)),
        )

    def _log_field_change_locked(self, lead: Lead, name: str, old: Any, new: Any, reason: str) -> None:
        field_id, label = _field_info(name)
        change = FieldChange(field_id, name, _as_text(new), _as_text(old))
        self._log_locked(
            lead.id, CHANGE_DATA_VALUE, primary_value_id=field_id, primary_value=label,
            attributes=(("New Value", change.new_value), ("Old Value", change.old_value), ("Reason", reason)),
            change=change,
        )

    # ---------------------------------------------------------- bulk export
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
            if job.active:
                raise SimError("1029", "Job already queued")
            if job.status != "Created":
                raise SimError("1003", f"Export job is {job.status}, it cannot be enqueued")
            if sum(1 for j in self._exports.values() if j.active) >= MAX_EXPORTS_QUEUED:
                raise SimError("1029", "Too many jobs in queue")
            job.status, job.queued_at = "Queued", self.wall_clock()
            self._export_queue.append(export_id)
            return job.describe()

    def export_status(self, export_id: str) -> dict[str, Any]:
        """A job's status. Each status poll is one step of the export service."""
        with self._lock:
            job = self._export_locked(export_id)
            self._step_exports_locked()
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
            job = self._exports.get(export_id)
            return job.file if job is not None and job.status == "Completed" else None

    def exports(self) -> list[dict[str, Any]]:
        """The status of every export job, oldest first."""
        with self._lock:
            return [job.describe() for job in self._exports.values()]

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

    def _finish_export_locked(self, job: ExportJob) -> None:
        job.finished_at = self.wall_clock()
        if self._exports_to_fail:
            self._exports_to_fail -= 1
            job.status, job.error_msg = "Failed", "Export failed (simulated fault)"
            return
        job.file, job.number_of_records = _render_export(job.spec, self._leads.values())
        job.status = "Completed"

    # ---------------------------------------------------------------- tokens
    def issue_token(self, client_id: str | None, client_secret: str | None) -> tuple[str, int] | None:
        """The current token and its remaining seconds, or None for bad credentials."""
        if not (
            client_id is not None
            and client_secret is not None
            and secrets.compare_digest(client_id.encode(), self.client_id.encode())
            and secrets.compare_digest(client_secret.encode(), self.client_secret.encode())
        ):
            return None
        with self._lock:
            now = self.clock()
            token = self._current_token
            if token is None or self._tokens[token] <= now:
                token = f"{uuid.uuid4()}:ab"
                self._tokens[token] = now + self.token_ttl
                self._current_token = token
            return token, max(0, int(self._tokens[token] - now))

    def check_token(self, token: str | None) -> str | None:
        """None if the token is good, else the Marketo error code (600/601/602)."""
        if not token:
            return "600"
        with self._lock:
            expires = self._tokens.get(token)
            if expires is None:
                return "601"
            if expires <= self.clock():
                return "602"
            return None

    def expire_tokens(self) -> int:
        """Make every issued token expired now. Returns how many were still valid."""
        with self._lock:
            now = self.clock()
            live = [t for t, exp in self._tokens.items() if exp > now]
            for t in live:
                self._tokens[t] = now
            return len(live)

    # ---------------------------------------------------------------- faults
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

    # ---------------------------------------------------- admission & counters
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
            day = self.wall_clock().astimezone(_QUOTA_TZ).date()
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
                f"'{_fmt_number(self.rate_limit_window)}' secs"
            )
        return ERROR_MESSAGES.get(code, "Error")

    def request_id(self) -> str:
        return f"{secrets.token_hex(2)}#{next(self._request_seq):x}"


# ====================================================================== app
def _state() -> SimulatorState:
    return current_app.config["SIMULATOR_STATE"]


def _envelope_error(state: SimulatorState, code: str, message: str | None = None) -> Response:
    state._count_error(code)
    return jsonify(
        {
            "requestId": state.request_id(),
            "success": False,
            "errors": [{"code": code, "message": message or state.error_message(code)}],
        }
    )


def _bare_status(status: int) -> Response:
    reason = HTTP_STATUS_CODES.get(status, "Error")
    body = (
        f"<html><head><title>{status} {reason}</title></head>"
        f"<body><center><h1>{status} {reason}</h1></center><hr><center>nginx</center></body></html>\n"
    )
    return Response(body, status=status, mimetype="text/html")


def _sleep(admission: Admission) -> None:
    fault = admission.fault
    if fault is not None and fault.latency > 0 and admission.release is not None:
        admission.release.wait(fault.latency)


def _fault_response(state: SimulatorState, fault: Fault | None) -> Response | None:
    if fault is None:
        return None
    if fault.http_status is not None:
        state._count_error(fault.http_status)
        return _bare_status(fault.http_status)
    if fault.code is not None:
        return _envelope_error(state, fault.code)
    return None


def _bearer_token() -> str | None:
    # The access_token query parameter was removed: only the header counts.
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


RestView = Callable[..., "dict[str, Any] | Response"]


def rest_endpoint(name: str) -> Callable[[RestView], Callable[..., Response]]:
    """Wrap a REST view: limits, faults, auth, envelope; ``name`` is its kind in stats.

    The view returns the envelope's extra keys (``result`` and optionally
    ``nextPageToken``, ``moreResult``, …), a finished Response (a file), or raises
    SimError.
    """

    def decorate(view: RestView) -> Callable[..., Response]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            state = _state()
            admission = state._admit_rest(name)
            if admission.reject:
                return _envelope_error(state, admission.reject)
            try:
                _sleep(admission)
                faulted = _fault_response(state, admission.fault)
                if faulted is not None:
                    return faulted
                auth_error = state.check_token(_bearer_token())
                if auth_error:
                    return _envelope_error(state, auth_error)
                try:
                    payload = view(*args, **kwargs)
                except SimError as err:
                    return _envelope_error(state, err.code, err.message)
                if isinstance(payload, Response):
                    return payload
                body = {"requestId": state.request_id(), "success": True}
                body.update(payload)
                return jsonify(body)
            finally:
                state._leave()

        return wrapper

    return decorate


def _request_params() -> dict[str, str]:
    """Query parameters, or for ``POST ?_method=GET`` the form body (over the query)."""
    params = {k: v for k, v in request.args.items() if k != "_method"}
    if request.method == "POST":
        if request.mimetype != "application/x-www-form-urlencoded":
            raise SimError("612", "Invalid Content Type")
        params.update(request.form.items())
    return params


def _split(value: str | None) -> list[str]:
    if not value:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def _page_token(offset: int, digest: str) -> str:
    raw = f"{offset}:{digest}".encode()
    return base64.b32encode(raw).decode().rstrip("=")


def _read_page_token(token: str, digest: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 8)
        offset_s, _, token_digest = base64.b32decode(padded).decode().partition(":")
        offset = int(offset_s)
    except Exception:
        raise SimError("1003", "Invalid nextPageToken") from None
    if token_digest != digest or offset < 0:
        raise SimError("1003", "Invalid nextPageToken")
    return offset


def _batch_size(raw: str | None) -> int:
    if raw in (None, ""):
        return MAX_BATCH_SIZE
    try:
        batch_size = int(raw)
    except ValueError:
        raise SimError("1003", f"Invalid batchSize '{raw}'") from None
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise SimError("1003", f"Invalid batchSize {batch_size} (1 to {MAX_BATCH_SIZE})")
    return batch_size


def _leads_query() -> dict[str, Any]:
    if request.method == "POST" and request.args.get("_method", "").upper() != "GET":
        raise SimError("610", "Requested resource not found (the simulator only serves POST ?_method=GET)")
    params = _request_params()
    filter_type = params.get("filterType", "").strip()
    if not filter_type:
        raise SimError("1003", "filterType not specified")
    values = _split(params.get("filterValues"))
    if not values:
        raise SimError("1003", "filterValues not specified")
    if len(values) > MAX_FILTER_VALUES:
        raise SimError("1003", f"Too many filterValues: {len(values)} (at most {MAX_FILTER_VALUES})")
    batch_size = _batch_size(params.get("batchSize"))
    fields = list(dict.fromkeys(["id", *_split(params.get("fields"))]))
    if fields == ["id"] and not params.get("fields"):
        fields = list(DEFAULT_FIELDS)

    matches = _state().query_leads(filter_type, values, fields)
    digest = hashlib.sha1(
        "\x1f".join([filter_type.lower(), ",".join(values), ",".join(fields)]).encode()
    ).hexdigest()[:10]
    offset = 0
    if params.get("nextPageToken"):
        offset = _read_page_token(params["nextPageToken"], digest)
    page = matches[offset : offset + batch_size]
    payload: dict[str, Any] = {"result": page}
    if offset + batch_size < len(matches):
        payload["nextPageToken"] = _page_token(offset + batch_size, digest)
    return payload


# ------------------------------------------------------------- activities
def _activity_types_view() -> dict[str, Any]:
    return {"result": _state().activity_types()}


def _paging_token_view() -> dict[str, Any]:
    since = _parse_datetime(request.args.get("sinceDatetime"))
    if since is None:
        raise SimError("1003", "sinceDatetime missing or not an ISO 8601 datetime")
    return {"nextPageToken": _state().paging_token(since)}


def _required_page_token() -> str:
    token = request.args.get("nextPageToken", "").strip()
    if not token:
        raise SimError("1003", "nextPageToken not specified")
    return token


def _activity_type_ids_param() -> list[int]:
    raw = _split(request.args.get("activityTypeIds"))
    if not 1 <= len(raw) <= MAX_ACTIVITY_TYPE_IDS:
        raise SimError("1003", f"activityTypeIds: 1 to {MAX_ACTIVITY_TYPE_IDS} ids")
    try:
        return [int(value) for value in raw]
    except ValueError:
        raise SimError("1003", f"Invalid activityTypeIds '{request.args.get('activityTypeIds')}'") from None


def _activities_view() -> dict[str, Any]:
    token = _required_page_token()
    type_ids = _activity_type_ids_param()
    batch_size = _batch_size(request.args.get("batchSize"))
    return _state().activity_page(token, type_ids, batch_size).payload()


def _lead_changes_view() -> dict[str, Any]:
    token = _required_page_token()
    fields = _split(request.args.get("fields"))
    if not fields:
        raise SimError("1003", "fields not specified")
    batch_size = _batch_size(request.args.get("batchSize"))
    return _state().lead_change_page(token, fields, batch_size).payload()


# ------------------------------------------------------------ bulk export
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


def _export_filter(raw: Any, supported: frozenset[str]) -> tuple[str, datetime, datetime]:
    """The one filter of a job: its type and date range."""
    if not isinstance(raw, dict) or not raw:
        raise SimError("1003", "filter not specified")
    if len(raw) > 1:
        raise SimError("1003", "Only one filter type may be specified per export job")
    ((filter_type, value),) = raw.items()
    if filter_type not in EXPORT_FILTER_TYPES:
        raise SimError("1003", f"Invalid filter type '{filter_type}'")
    if filter_type not in supported:
        raise SimError("1035")
    start_at, end_at = _date_range(filter_type, value)
    return filter_type, start_at, end_at


def _date_range(filter_type: str, value: Any) -> tuple[datetime, datetime]:
    if not isinstance(value, dict):
        raise SimError("1003", f"{filter_type} needs startAt and endAt")
    start_at, end_at = _parse_datetime(value.get("startAt")), _parse_datetime(value.get("endAt"))
    if start_at is None or end_at is None:
        raise SimError("1003", f"{filter_type}: startAt and endAt must be ISO 8601 datetimes")
    if end_at < start_at:
        raise SimError("1003", f"{filter_type}: endAt is before startAt")
    if end_at - start_at > MAX_EXPORT_SPAN:
        raise SimError("1003", f"{filter_type}: the date range must be {MAX_EXPORT_SPAN.days} days or fewer")
    return start_at, end_at


def _export_spec(body: Mapping[str, Any], supported_filters: frozenset[str]) -> ExportSpec:
    fields = _export_fields(body.get("fields"))
    filter_type, start_at, end_at = _export_filter(body.get("filter"), supported_filters)
    return ExportSpec(
        fields=fields,
        column_headers=_column_headers(fields, body.get("columnHeaderNames")),
        format=_export_format(body.get("format")),
        filter_type=filter_type,
        start_at=start_at,
        end_at=end_at,
    )


def _export_create_view() -> dict[str, Any]:
    state = _state()
    spec = _export_spec(_json_request_body(), state.export_filters_supported)
    return {"result": [state.create_export(spec)]}


def _export_enqueue_view(export_id: str) -> dict[str, Any]:
    return {"result": [_state().enqueue_export(export_id)]}


def _export_status_view(export_id: str) -> dict[str, Any]:
    return {"result": [_state().export_status(export_id)]}


def _export_cancel_view(export_id: str) -> dict[str, Any]:
    return {"result": [_state().cancel_export(export_id)]}


def _export_file_view(export_id: str) -> Response:
    # As Marketo: an unknown or unfinished job is a plain-text 404, not an envelope.
    state = _state()
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


def _token_view() -> Response:
    state = _state()
    admission = state._admit_identity()
    _sleep(admission)
    faulted = _fault_response(state, admission.fault)
    if faulted is not None:
        return faulted
    if request.args.get("grant_type") != "client_credentials":
        state._count_error(400)
        return jsonify(
            {"error": "unsupported_grant_type", "error_description": "Unsupported grant type"}
        ), 400
    issued = state.issue_token(request.args.get("client_id"), request.args.get("client_secret"))
    if issued is None:
        state._count_error(401)
        return jsonify({"error": "invalid_client", "error_description": "Bad client credentials"}), 401
    token, expires_in = issued
    return jsonify(
        {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": expires_in,
            "scope": "apiuser@example.com",
        }
    )


def _raw_uri() -> str:
    """Path and query as the client sent them (RAW_URI from the HTTP server; the
    test client may leave the query out of it)."""
    env = request.environ
    qs = env.get("QUERY_STRING", "")
    raw = env.get("RAW_URI") or env.get("REQUEST_URI")
    if not raw:
        raw = quote(env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", ""), safe="/:@!$&'()*+,;=-._~")
    if qs and "?" not in raw:
        raw = f"{raw}?{qs}"
    return raw


def _is_marketo_path(path: str) -> bool:
    return not path.startswith("/_sim/") and path != "/_sim"


def _front_door() -> Response | None:
    """What Marketo's front end refuses before the API sees the request."""
    if not _is_marketo_path(request.path):
        return None
    state = _state()
    if len(_raw_uri().encode("latin-1", "replace")) > MAX_URI_BYTES:
        state._count_http_reject(414)
        return _bare_status(414)
    request.max_form_memory_size = MAX_BODY_BYTES
    too_large = False
    if request.content_length is not None:
        too_large = request.content_length > MAX_BODY_BYTES
    elif request.environ.get("wsgi.input_terminated"):
        # A chunked body: read (and cache) one byte past the limit to tell.
        request.max_content_length = MAX_BODY_BYTES + 1
        too_large = len(request.get_data(cache=True)) > MAX_BODY_BYTES
    if too_large:
        state._count_http_reject(413)
        return _bare_status(413)
    return None


def _too_large(_err: RequestEntityTooLarge) -> Response:
    # Werkzeug refused a body or form part past its limits.
    _state()._count_http_reject(413)
    return _bare_status(413)


# ------------------------------------------------------------ control API
def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def _bad_request(message: str) -> tuple[Response, int]:
    return jsonify({"error": message}), 400


def _sim_add_leads() -> Any:
    try:
        leads = _json_body().get("leads")
        if not isinstance(leads, list):
            raise ValueError("body must be {\"leads\": [...]}")
        ids = _state().add_leads(leads)
    except ValueError as err:
        return _bad_request(str(err))
    return jsonify({"ids": ids}), 201


def _sim_list_leads() -> Any:
    return jsonify({"leads": _state().leads(request.args.get("email"))})


def _sim_set_unsubscribed(unsubscribed: bool) -> Any:
    try:
        body = _json_body()
        email, reason = body.get("email"), body.get("reason")
        if not isinstance(email, str) or not email.strip():
            raise ValueError("body must be {\"email\": ...}")
        if reason is not None and not isinstance(reason, str):
            raise ValueError("reason must be a string")
    except ValueError as err:
        return _bad_request(str(err))
    state = _state()
    change = state.unsubscribe if unsubscribed else state.resubscribe
    changed = change(email) if reason is None else change(email, reason=reason)
    return jsonify({"email": email, "changed": changed, "matched": len(state.leads(email))})


def _sim_change_email() -> Any:
    try:
        body = _json_body()
        lead_id, email = body.get("leadId"), body.get("email")
        if isinstance(lead_id, bool) or not isinstance(lead_id, int):
            raise ValueError("body must be {\"leadId\": <int>, \"email\": ...}")
        changed = _state().change_email(lead_id, email)
    except ValueError as err:
        return _bad_request(str(err))
    return jsonify({"leadId": lead_id, "email": email, "changed": changed})


def _sim_list_activities() -> Any:
    lead_id = request.args.get("leadId")
    if lead_id is not None and not lead_id.isdigit():
        return _bad_request("leadId must be an integer")
    return jsonify({"activities": _state().activities(None if lead_id is None else int(lead_id))})


def _sim_list_exports() -> Any:
    return jsonify({"exports": _state().exports()})


def _sim_fail_next_export() -> Any:
    try:
        count = _json_body().get("count", 1)
        _state().fail_next_export(count)
    except ValueError as err:
        return _bad_request(str(err))
    return jsonify({"failNext": count}), 201


def _sim_inject_fault() -> Any:
    try:
        body = _json_body()
        allowed = {"code", "http_status", "latency", "count", "paths"}
        unknown = set(body) - allowed
        if unknown:
            raise ValueError(f"unknown fault arguments: {sorted(unknown)}")
        code = body.get("code")
        _state().inject_fault(
            None if code is None else str(code),
            http_status=body.get("http_status"),
            latency=body.get("latency", 0.0),
            count=body.get("count"),
            paths=body.get("paths", "rest"),
        )
    except ValueError as err:
        return _bad_request(str(err))
    return jsonify({"faults": _state().faults()}), 201


def _sim_list_faults() -> Any:
    return jsonify({"faults": _state().faults()})


def _sim_clear_faults() -> Any:
    _state().clear_faults()
    return jsonify({"faults": []})


def _sim_expire_tokens() -> Any:
    return jsonify({"expired": _state().expire_tokens()})


def _sim_stats() -> Any:
    return jsonify(_state().stats())


def _sim_reset() -> Any:
    _state().reset()
    return jsonify({"reset": True})


def _add_rest_rule(app: Flask, path: str, kind: str, view: RestView, method: str = "GET") -> None:
    """Serve ``view`` at ``path`` as a REST endpoint counted under ``kind`` in stats."""
    app.add_url_rule(path, kind, rest_endpoint(kind)(view), methods=[method])


def create_simulator_app(state: SimulatorState | None = None) -> Flask:
    """The simulator as a Flask app; ``app.config["SIMULATOR_STATE"]`` holds the state."""
    app = Flask(__name__)
    app.config["SIMULATOR_STATE"] = state if state is not None else SimulatorState()
    app.json.sort_keys = False  # type: ignore[attr-defined]

    app.before_request(_front_door)
    app.register_error_handler(RequestEntityTooLarge, _too_large)

    # Marketo
    app.add_url_rule("/identity/oauth/token", "token", _token_view, methods=["GET", "POST"])
    app.add_url_rule(
        "/rest/v1/leads.json", "leads", rest_endpoint("leads")(_leads_query), methods=["GET", "POST"]
    )

    _add_rest_rule(app, "/rest/v1/activities/types.json", "activity_types", _activity_types_view)
    _add_rest_rule(app, "/rest/v1/activities/pagingtoken.json", "paging_token", _paging_token_view)
    _add_rest_rule(app, "/rest/v1/activities.json", "activities", _activities_view)
    _add_rest_rule(app, "/rest/v1/activities/leadchanges.json", "lead_changes", _lead_changes_view)
    export = "/bulk/v1/leads/export"
    _add_rest_rule(app, f"{export}/create.json", "export_create", _export_create_view, "POST")
    _add_rest_rule(app, f"{export}/<export_id>/enqueue.json", "export_enqueue", _export_enqueue_view, "POST")
    _add_rest_rule(app, f"{export}/<export_id>/status.json", "export_status", _export_status_view)
    _add_rest_rule(app, f"{export}/<export_id>/file.json", "export_file", _export_file_view)
    _add_rest_rule(app, f"{export}/<export_id>/cancel.json", "export_cancel", _export_cancel_view, "POST")

    def _unknown_rest(subpath: str) -> dict[str, Any]:
        raise SimError("610", "Requested resource not found")

    for prefix in ("rest", "bulk"):
        app.add_url_rule(
            f"/{prefix}/<path:subpath>",
            f"{prefix}_unknown",
            rest_endpoint("unknown")(_unknown_rest),
            methods=["GET", "POST", "PUT", "DELETE"],
        )

    # Control API
    app.add_url_rule("/_sim/leads", "sim_add_leads", _sim_add_leads, methods=["POST"])
    app.add_url_rule("/_sim/leads", "sim_list_leads", _sim_list_leads, methods=["GET"])
    app.add_url_rule(
        "/_sim/unsubscribe", "sim_unsubscribe", lambda: _sim_set_unsubscribed(True), methods=["POST"]
    )
    app.add_url_rule(
        "/_sim/resubscribe", "sim_resubscribe", lambda: _sim_set_unsubscribed(False), methods=["POST"]
    )
    app.add_url_rule("/_sim/change-email", "sim_change_email", _sim_change_email, methods=["POST"])
    app.add_url_rule("/_sim/activities", "sim_list_activities", _sim_list_activities, methods=["GET"])
    app.add_url_rule("/_sim/exports", "sim_list_exports", _sim_list_exports, methods=["GET"])
    app.add_url_rule(
        "/_sim/fail-next-export", "sim_fail_next_export", _sim_fail_next_export, methods=["POST"]
    )
    app.add_url_rule("/_sim/faults", "sim_inject_fault", _sim_inject_fault, methods=["POST"])
    app.add_url_rule("/_sim/faults", "sim_list_faults", _sim_list_faults, methods=["GET"])
    app.add_url_rule("/_sim/faults", "sim_clear_faults", _sim_clear_faults, methods=["DELETE"])
    app.add_url_rule("/_sim/expire-tokens", "sim_expire_tokens", _sim_expire_tokens, methods=["POST"])
    app.add_url_rule("/_sim/stats", "sim_stats", _sim_stats, methods=["GET"])
    app.add_url_rule("/_sim/reset", "sim_reset", _sim_reset, methods=["POST"])
    return app


# ================================================================= serving
class _QuietHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class _LoggingHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"


class RunningSimulator:
    """A simulator served over real HTTP in a background thread."""

    def __init__(self, server: Any, thread: threading.Thread, state: SimulatorState, base_url: str):
        self._server = server
        self._thread = thread
        self.state = state
        self.base_url = base_url
        self._stopped = False

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.state.release_waiters()
        self._server.shutdown()
        self._thread.join(timeout=10)
        self._server.server_close()

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RunningSimulator {self.base_url}>"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _wait_accepting(host: str, port: int, deadline: float) -> None:
    connect_host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    while True:
        try:
            with socket.create_connection((connect_host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def start_simulator(
    state: SimulatorState | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    quiet: bool = True,
) -> RunningSimulator:
    """Serve a simulator over HTTP in a background thread (port 0 = a free port).
    Returns once it accepts connections."""
    state = state if state is not None else SimulatorState()
    app = create_simulator_app(state)
    handler = _QuietHandler if quiet else _LoggingHandler
    server = make_server(host, port, app, threaded=True, request_handler=handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1},
        name=f"marketo-simulator:{server.server_port}", daemon=True,
    )
    thread.start()
    actual_port = server.server_port
    try:
        _wait_accepting(host, actual_port, time.monotonic() + 10)
    except OSError:
        server.shutdown()
        thread.join(timeout=5)
        raise
    return RunningSimulator(server, thread, state, f"http://{_url_host(host)}:{actual_port}")


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


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m gateway.marketo.simulator", description="Marketo Engage simulator"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8101, help="0 = a free port (printed on start)")
    p.add_argument("--seed", choices=["demo", "none"], default="none")
    p.add_argument("--client-id", default="sim-client")
    p.add_argument("--client-secret", default="sim-secret")
    p.add_argument("--token-ttl", type=int, default=3600)
    p.add_argument("--rate-limit-calls", type=int, default=100)
    p.add_argument("--rate-limit-window", type=float, default=20.0)
    p.add_argument("--max-concurrent", type=int, default=10)
    p.add_argument("--daily-quota", type=int, default=50_000)
    p.add_argument("--quiet", action="store_true", help="do not log each request")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    state = SimulatorState(
        client_id=args.client_id,
        client_secret=args.client_secret,
        token_ttl=args.token_ttl,
        rate_limit_calls=args.rate_limit_calls,
        rate_limit_window=args.rate_limit_window,
        max_concurrent=args.max_concurrent,
        daily_quota=args.daily_quota,
    )
    if args.seed == "demo":
        seed_demo(state)

    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    running = start_simulator(state, args.host, args.port, quiet=args.quiet)
    try:
        print(f"Marketo simulator listening on {running.base_url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        running.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("Marketo simulator stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
