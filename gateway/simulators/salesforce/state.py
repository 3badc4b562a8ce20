"""The simulated org: Contacts, Leads, Users and Tasks, its access tokens, its faults and its call counts."""
from __future__ import annotations

import itertools
import secrets
import threading
from collections import Counter
from datetime import datetime, timezone
from typing import Any

PREFIXES = {"Contact": "003", "Lead": "00Q", "User": "005", "Task": "00T"}
FIELDS = {
    "Contact": ("Id", "FirstName", "LastName", "Email", "HasOptedOutOfEmail", "CreatedDate"),
    "Lead": ("Id", "FirstName", "LastName", "Company", "Email", "HasOptedOutOfEmail", "IsConverted", "CreatedDate"),
    "User": ("Id", "Name", "Email", "IsActive", "CreatedDate"),
    "Task": ("Id", "Subject", "Description", "Status", "ActivityDate", "TaskSubtype", "WhoId", "OwnerId",
             "CreatedDate"),
}
DEFAULTS = {
    "Contact": {"HasOptedOutOfEmail": False},
    "Lead": {"HasOptedOutOfEmail": False, "IsConverted": False, "Company": "Unknown"},
    "User": {"IsActive": True},
    "Task": {"Status": "Not Started"},
}
CLIENT_ID = "sim-client-id"
CLIENT_SECRET = "sim-client-secret"


def created_date() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


class SalesforceSimState:
    """All of the simulated org behind one lock."""

    def __init__(self, *, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET, page_size: int = 2000):
        self.lock = threading.RLock()
        self.clients = {client_id: client_secret}
        self.page_size = page_size
        self.records: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in PREFIXES}
        self.by_id15: dict[str, tuple[str, str]] = {}  # the first 15 characters of an id → (type, full id)
        self.tokens: set[str] = set()
        self.cursors: dict[str, list[dict]] = {}
        self.calls: Counter[str] = Counter()
        self.faults: list[dict] = []  # {"kind": down | request_limit | expire_session, "count": int | None, "after"}
        self.rejections: list[dict] = []  # {"field", "value", "statusCode", "message"} for created records
        self.hold_creates = threading.Event()  # while set, a create answers only after release
        self.held = threading.Event()  # set when a create has been applied and is being held
        self._release = threading.Event()
        self._ids = itertools.count(1)

    def count(self, kind: str, n: int = 1) -> None:
        with self.lock:
            self.calls[kind] += n

    # --- records ----------------------------------------------------------------------------------
    def new_id(self, sobject: str) -> str:
        return f"{PREFIXES[sobject]}5g{next(self._ids):010d}AAA"

    def add(self, sobject: str, values: dict) -> str:
        if sobject not in PREFIXES:
            raise ValueError(f"unknown object type {sobject!r}")
        with self.lock:
            record_id = values.get("Id") or self.new_id(sobject)
            record = {**DEFAULTS[sobject], **values, "Id": record_id, "CreatedDate": created_date()}
            self.records[sobject][record_id] = record
            self.by_id15[record_id[:15]] = (sobject, record_id)
            return record_id

    def find(self, record_id: str) -> tuple[str, dict] | None:
        with self.lock:
            found = self.by_id15.get(record_id[:15])
            return None if found is None else (found[0], self.records[found[0]][found[1]])

    def list(self, sobject: str) -> list[dict]:
        with self.lock:
            return [dict(r) for r in self.records[sobject].values()]

    # --- tokens -----------------------------------------------------------------------------------
    def issue_token(self) -> str:
        token = "00Dsim!" + secrets.token_urlsafe(32)
        with self.lock:
            self.tokens.add(token)
        return token

    def expire_sessions(self) -> None:
        with self.lock:
            self.tokens.clear()

    # --- faults -----------------------------------------------------------------------------------
    def take_fault(self) -> str | None:
        """The next injected fault, used up by this call (a fault without a count lasts until cleared)."""
        with self.lock:
            for fault in self.faults:
                if fault.get("after"):
                    fault["after"] -= 1  # this many calls go through before the fault starts
                    return None
                if fault["count"] is None:
                    return fault["kind"]
                if fault["count"] > 0:
                    fault["count"] -= 1
                    return fault["kind"]
            return None

    def rejection_for(self, record: dict) -> dict | None:
        with self.lock:
            for rule in self.rejections:
                if str(record.get(rule["field"], "")).lower() == str(rule["value"]).lower() or (
                        rule["field"] == "Description" and str(rule["value"]) in str(record.get("Description", ""))):
                    return rule
        return None

    def hold(self) -> None:
        """Called after a create was applied: wait, while holding is on, until released (the kill test)."""
        if self.hold_creates.is_set():
            self.held.set()
            self._release.wait(timeout=60)

    def start_holding(self) -> None:
        self._release.clear()
        self.held.clear()
        self.hold_creates.set()

    def release_held(self) -> None:
        self.hold_creates.clear()
        self._release.set()
