"""Changing the admin's settings, one path for the admin API and the console: the Marketo test before the
check goes on, the change and its audit rows in one transaction, and this process's view of the settings."""
from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from gateway.connection import check_marketo_connection
from gateway.events import emit
from gateway.store import Change, Settings, utcnow

if TYPE_CHECKING:
    from gateway import Gate

STATUS_MAX_AGE = timedelta(minutes=5)  # how stale a shown connection status may be before it is tested again
VIA_API = "api"
VIA_CONSOLE = "console"


class CheckStaysOff(Exception):
    """The check was asked to go on while Marketo cannot be reached; `message` says what Marketo answered."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def check_connection(gate: Gate) -> tuple[bool, str]:
    """Ask Marketo now; the outcome is remembered in the settings for whoever shows them next."""
    return check_marketo_connection(gate.marketo, gate.store, timeout=gate.config.check_timeout)


def current_settings(gate: Gate) -> Settings:
    """The settings as an admin should see them: the connection tested again when the last test is stale."""
    settings = gate.store.settings.get()
    if settings.marketo_checked_at is None or utcnow() - settings.marketo_checked_at > STATUS_MAX_AGE:
        check_connection(gate)
        settings = gate.store.settings.get()
    return settings


def change_settings(gate: Gate, changes: dict, *, actor: str, via: str) -> Settings:
    """Apply `changes` (marketo_check_enabled, failure_mode) as `actor`; raises CheckStaysOff, changing nothing,
    when the check is to go on and Marketo's connection fails."""
    if changes.get("marketo_check_enabled"):
        connected, message = check_connection(gate)
        if not connected:
            raise CheckStaysOff(message)
    store = gate.store
    with store.transaction() as session:
        before = store.settings.get(session=session)
        after = store.settings.update(changes, updated_by=actor, session=session)
        store.audit.record(audited_changes(gate, before, after), actor=actor, via=via, session=session)
    gate.checks.forget_context()
    emit("settings.changed", by=actor, via=via, **changes)
    return after


def audited_changes(gate: Gate, before: Settings, after: Settings) -> list[Change]:
    """What changed, in the words the console shows; a setting written with the value it had is no change."""
    changes = []
    if before.marketo_check_enabled != after.marketo_check_enabled:
        changes.append(Change("marketo_check_enabled", _on_off(before.marketo_check_enabled),
                              _on_off(after.marketo_check_enabled)))
    if before.failure_mode != after.failure_mode:
        changes.append(Change("failure_mode", _failure_mode(gate, before), _failure_mode(gate, after)))
    return changes


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def _failure_mode(gate: Gate, settings: Settings) -> str:
    if settings.failure_mode is None:
        return f"{gate.config.failure_mode} (GATEWAY_FAILURE_MODE)"
    return settings.failure_mode
