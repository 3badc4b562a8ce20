"""The global switches an admin controls, in the one gate_settings row, and the last Marketo connection test."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from gateway.store.common import as_utc, utcnow
from gateway.store.models import GateSettings
from gateway.store.repository import Repository

SETTINGS_ID = 1  # the row the first migration inserts


@dataclass(frozen=True)
class Settings:
    marketo_check_enabled: bool
    failure_mode: str | None
    marketo_connected: bool | None
    marketo_message: str | None
    marketo_checked_at: datetime | None
    updated_at: datetime | None
    updated_by: str | None


class SettingsRepository(Repository):
    def get(self, *, session: Session | None = None) -> Settings:
        with self._reading(session) as session:
            return _settings(session.get(GateSettings, SETTINGS_ID))

    def update(self, changes: dict, *, updated_by: str, session: Session | None = None) -> Settings:
        with self._writing(session) as writing:
            writing.execute(
                update(GateSettings)
                .where(GateSettings.id == SETTINGS_ID)
                .values(**changes, updated_at=utcnow(), updated_by=updated_by)
            )
        return self.get(session=session)

    def record_marketo_status(self, connected: bool, message: str) -> None:
        with self._writing() as session:
            session.execute(
                update(GateSettings)
                .where(GateSettings.id == SETTINGS_ID)
                .values(marketo_connected=connected, marketo_message=message, marketo_checked_at=utcnow())
            )


def _settings(row: GateSettings) -> Settings:
    return Settings(
        marketo_check_enabled=bool(row.marketo_check_enabled),
        failure_mode=row.failure_mode,
        marketo_connected=row.marketo_connected,
        marketo_message=row.marketo_message,
        marketo_checked_at=as_utc(row.marketo_checked_at),
        updated_at=as_utc(row.updated_at),
        updated_by=row.updated_by,
    )
