"""Static and smart lists: the membership Bulk Lead Extract's ``staticListId`` / ``smartListId`` filters
select, and the asset API's look-up by name (``/rest/asset/v1/staticList/byName.json``,
``/rest/asset/v1/smartList/byName.json``)."""
from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import request

from gateway.simulators.marketo.http import current_state
from gateway.simulators.marketo.protocol import SimError

if TYPE_CHECKING:
    from gateway.simulators.marketo.leads import Lead

LIST_KINDS = ("staticList", "smartList")
_FIRST_LIST_ID = 1001


@dataclass
class SimList:
    """A static list holds lead ids; a smart list holds a rule (field -> value), evaluated when asked."""

    list_id: int
    kind: str
    name: str
    members: set[int] = field(default_factory=set)
    rule: dict[str, Any] = field(default_factory=dict)

    def selects(self, lead: Lead) -> bool:
        if self.kind == "staticList":
            return lead.id in self.members
        return all(lead.get(name) == value for name, value in self.rule.items())

    def describe(self) -> dict[str, Any]:
        return {"id": self.list_id, "name": self.name, "workspace": "Default"}


class ListsMixin:
    """The lists of ``SimulatorState``."""

    _lock: threading.Lock

    def _reset_lists_locked(self) -> None:
        self._lists: dict[int, SimList] = {}
        self._next_list_id = _FIRST_LIST_ID

    def add_static_list(self, name: str, lead_ids: Iterable[int] = ()) -> int:
        """A static list of these leads; its id."""
        with self._lock:
            return self._add_list_locked(SimList(self._next_list_id, "staticList", name, members=set(lead_ids)))

    def add_smart_list(self, name: str, rule: Mapping[str, Any]) -> int:
        """A smart list of the leads whose fields equal ``rule`` (e.g. ``{"unsubscribed": True}``); its id."""
        with self._lock:
            return self._add_list_locked(SimList(self._next_list_id, "smartList", name, rule=dict(rule)))

    def _add_list_locked(self, new: SimList) -> int:
        self._lists[new.list_id] = new
        self._next_list_id += 1
        return new.list_id

    def list_by_id(self, kind: str, list_id: int) -> SimList | None:
        with self._lock:
            found = self._lists.get(list_id)
            return found if found is not None and found.kind == kind else None

    def lists_named(self, kind: str, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [one.describe() for one in self._lists.values() if one.kind == kind and one.name == name]


def _by_name_view(kind: str) -> dict[str, Any]:
    name = request.args.get("name")
    if not name:
        raise SimError("701", "name cannot be blank")
    found = current_state().lists_named(kind, name)
    if not found:
        # As Marketo's asset API: success, no result, a warning.
        return {"result": [], "warnings": ["No assets found for the given search criteria."]}
    return {"result": found}


def static_list_by_name_view() -> dict[str, Any]:
    return _by_name_view("staticList")


def smart_list_by_name_view() -> dict[str, Any]:
    return _by_name_view("smartList")
