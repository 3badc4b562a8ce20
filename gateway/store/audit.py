"""The audit of settings changes: who changed which setting, when, through what, from what to what."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from gateway.store.common import as_utc, storable_text, utcnow
from gateway.store.models import SettingsChange
from gateway.store.repository import Repository


@dataclass(frozen=True)
class Change:
    setting: str
    old_value: str | None
    new_value: str | None


@dataclass(frozen=True)
class RecordedChange:
    id: int
    at: datetime
    actor: str
    via: str
    setting: str
    old_value: str | None
    new_value: str | None


class AuditRepository(Repository):
    def record(self, changes: Sequence[Change], *, actor: str, via: str, at: datetime | None = None,
               session: Session | None = None) -> None:
        if not changes:
            return
        at = at or utcnow()
        rows = [{"at": at, "actor": storable_text(actor)[:100], "via": via, "setting": c.setting,
                 "old_value": c.old_value, "new_value": c.new_value} for c in changes]
        with self._writing(session) as session:
            session.execute(insert(SettingsChange), rows)

    def page(self, *, limit: int, before_id: int | None = None) -> list[RecordedChange]:
        """Newest first; `before_id` is the id of the last row of the previous page."""
        query = select(SettingsChange).order_by(SettingsChange.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(SettingsChange.id < before_id)
        with self._reading() as session:
            return [_recorded(row) for row in session.scalars(query)]


def _recorded(row: SettingsChange) -> RecordedChange:
    return RecordedChange(id=row.id, at=as_utc(row.at), actor=row.actor, via=row.via, setting=row.setting,
                          old_value=row.old_value, new_value=row.new_value)
