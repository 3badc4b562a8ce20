"""The activity log: activity types, the log every change of a lead appends to, and the
``activities/types.json``, ``pagingtoken.json``, ``activities.json`` and ``leadchanges.json`` pages."""
from __future__ import annotations

import base64
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import request

from gateway.simulators.marketo.http import batch_size_param, current_state, split_values
from gateway.simulators.marketo.leads import Lead, field_info
from gateway.simulators.marketo.protocol import SimError, as_text, as_utc, iso, parse_datetime

MAX_ACTIVITY_TYPE_IDS = 10
FIRST_ACTIVITY_ID = 1001

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


def resolve_activity_type_ids(overrides: Mapping[str, int] | None) -> dict[str, int]:
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
            "activityDate": iso(self.date),
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


class ActivitiesMixin:
    """The activity log of ``SimulatorState``."""

    _lock: threading.Lock
    wall_clock: Callable[[], datetime]
    activity_type_ids: dict[str, int]
    _leads: dict[int, Lead]

    def _reset_activities_locked(self) -> None:
        self._activities: list[Activity] = []
        self._next_activity_id = FIRST_ACTIVITY_ID
        self._token_tag = secrets.token_hex(4)  # paging tokens of an earlier state are foreign

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
        since = as_utc(since)
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
        field_id, label = field_info(name)
        change = FieldChange(field_id, name, as_text(new), as_text(old))
        self._log_locked(
            lead.id, CHANGE_DATA_VALUE, primary_value_id=field_id, primary_value=label,
            attributes=(("New Value", change.new_value), ("Old Value", change.old_value), ("Reason", reason)),
            change=change,
        )


# ------------------------------------------------------------------- views
def activity_types_view() -> dict[str, Any]:
    return {"result": current_state().activity_types()}


def paging_token_view() -> dict[str, Any]:
    since = parse_datetime(request.args.get("sinceDatetime"))
    if since is None:
        raise SimError("1003", "sinceDatetime missing or not an ISO 8601 datetime")
    return {"nextPageToken": current_state().paging_token(since)}


def _required_page_token() -> str:
    token = request.args.get("nextPageToken", "").strip()
    if not token:
        raise SimError("1003", "nextPageToken not specified")
    return token


def _activity_type_ids_param() -> list[int]:
    raw = split_values(request.args.get("activityTypeIds"))
    if not 1 <= len(raw) <= MAX_ACTIVITY_TYPE_IDS:
        raise SimError("1003", f"activityTypeIds: 1 to {MAX_ACTIVITY_TYPE_IDS} ids")
    try:
        return [int(value) for value in raw]
    except ValueError:
        raise SimError("1003", f"Invalid activityTypeIds '{request.args.get('activityTypeIds')}'") from None


def activities_view() -> dict[str, Any]:
    token = _required_page_token()
    type_ids = _activity_type_ids_param()
    batch_size = batch_size_param(request.args.get("batchSize"))
    return current_state().activity_page(token, type_ids, batch_size).payload()


def lead_changes_view() -> dict[str, Any]:
    token = _required_page_token()
    fields = split_values(request.args.get("fields"))
    if not fields:
        raise SimError("1003", "fields not specified")
    batch_size = batch_size_param(request.args.get("batchSize"))
    return current_state().lead_change_page(token, fields, batch_size).payload()
