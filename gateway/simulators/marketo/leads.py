"""Leads: the simulated lead database, its changes, and ``/rest/v1/leads.json`` lookups."""
from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import request

from gateway.simulators.marketo.http import batch_size_param, current_state, split_values
from gateway.simulators.marketo.protocol import SimError, as_utc, iso, parse_datetime

MAX_FILTER_VALUES = 300
MAX_MATCHES = 1000

DEFAULT_FIELDS = ("id", "email", "firstName", "lastName", "updatedAt", "createdAt")

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
            return iso(self.created_at)
        if name == "updatedAt":
            return iso(self.updated_at)
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
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
        }
        out.update(self.attributes)
        return out


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


def field_info(name: str) -> tuple[int, str]:
    return LEAD_FIELD_INFO.get(name, (0, name))


class LeadsMixin:
    """The lead database of ``SimulatorState``: leads by id and by email. Every change of a lead
    field goes through ``_change_locked``, which logs it in the activity log."""

    _lock: threading.Lock
    wall_clock: Callable[[], datetime]

    def _reset_leads_locked(self) -> None:
        self._leads: dict[int, Lead] = {}
        self._by_email: dict[str, list[int]] = {}
        self._next_id = 1

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
            created_at = parse_datetime(item["createdAt"])
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
        created = as_utc(created_at) if created_at is not None else self.wall_clock()
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


# ------------------------------------------------------------- leads.json
def _request_params() -> dict[str, str]:
    """Query parameters, or for ``POST ?_method=GET`` the form body (over the query)."""
    params = {k: v for k, v in request.args.items() if k != "_method"}
    if request.method == "POST":
        if request.mimetype != "application/x-www-form-urlencoded":
            raise SimError("612", "Invalid Content Type")
        params.update(request.form.items())
    return params


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


def leads_view() -> dict[str, Any]:
    if request.method == "POST" and request.args.get("_method", "").upper() != "GET":
        raise SimError("610", "Requested resource not found (the simulator only serves POST ?_method=GET)")
    params = _request_params()
    filter_type = params.get("filterType", "").strip()
    if not filter_type:
        raise SimError("1003", "filterType not specified")
    values = split_values(params.get("filterValues"))
    if not values:
        raise SimError("1003", "filterValues not specified")
    if len(values) > MAX_FILTER_VALUES:
        raise SimError("1003", f"Too many filterValues: {len(values)} (at most {MAX_FILTER_VALUES})")
    batch_size = batch_size_param(params.get("batchSize"))
    fields = list(dict.fromkeys(["id", *split_values(params.get("fields"))]))
    if fields == ["id"] and not params.get("fields"):
        fields = list(DEFAULT_FIELDS)

    matches = current_state().query_leads(filter_type, values, fields)
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
