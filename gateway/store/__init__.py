"""The gate's storage: settings, the blocked-send log and API keys, behind one small API."""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from gateway.store.models import ApiKey, BlockedSend, GateSettings

SETTINGS_ID = 1


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything the gate writes is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Settings:
    marketo_check_enabled: bool
    failure_mode: str | None
    marketo_connected: bool | None
    marketo_message: str | None
    marketo_checked_at: datetime | None
    updated_at: datetime | None
    updated_by: str | None


@dataclass(frozen=True)
class BlockedSendEntry:
    check_id: str
    source: str
    workflow: str
    sender: str | None
    recipient: str
    reason_code: str
    message_id: str | None


@dataclass(frozen=True)
class StoredKey:
    id: int
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class Store:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.session = sessionmaker(engine, expire_on_commit=False)

    # settings -------------------------------------------------------------
    def settings(self) -> Settings:
        with self.session() as session:
            row = session.get(GateSettings, SETTINGS_ID)
            return Settings(
                marketo_check_enabled=bool(row.marketo_check_enabled),
                failure_mode=row.failure_mode,
                marketo_connected=row.marketo_connected,
                marketo_message=row.marketo_message,
                marketo_checked_at=as_utc(row.marketo_checked_at),
                updated_at=as_utc(row.updated_at),
                updated_by=row.updated_by,
            )

    def update_settings(self, changes: dict, *, updated_by: str) -> Settings:
        with self.session.begin() as session:
            session.execute(
                update(GateSettings)
                .where(GateSettings.id == SETTINGS_ID)
                .values(**changes, updated_at=utcnow(), updated_by=updated_by)
            )
        return self.settings()

    def record_marketo_status(self, connected: bool, message: str) -> None:
        with self.session.begin() as session:
            session.execute(
                update(GateSettings)
                .where(GateSettings.id == SETTINGS_ID)
                .values(marketo_connected=connected, marketo_message=message, marketo_checked_at=utcnow())
            )

    # blocked-send log ------------------------------------------------------
    def log_blocked_sends(self, entries: Sequence[BlockedSendEntry], at: datetime | None = None) -> None:
        """All rows of one check in one transaction: the log holds a check's blocks entirely or not at all."""
        if not entries:
            return
        at = at or utcnow()
        with self.session.begin() as session:
            session.execute(insert(BlockedSend), [{"at": at, **entry.__dict__} for entry in entries])

    def blocked_sends(self, *, limit: int, before_id: int | None = None) -> list[BlockedSend]:
        """Newest first; `before_id` is the cursor: the id of the last row of the previous page."""
        query = select(BlockedSend).order_by(BlockedSend.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(BlockedSend.id < before_id)
        with self.session() as session:
            rows = list(session.scalars(query))
        for row in rows:
            row.at = as_utc(row.at)
        return rows

    def iter_blocked_sends(self, *, before_id: int | None = None, chunk: int = 1000) -> Iterator[BlockedSend]:
        while True:
            rows = self.blocked_sends(limit=chunk, before_id=before_id)
            yield from rows
            if len(rows) < chunk:
                return
            before_id = rows[-1].id

    # API keys -------------------------------------------------------------
    def create_key(self, name: str, role: str) -> str:
        """Returns the new key; only its hash is stored, so this is the one time it can be seen."""
        key = "gk_" + secrets.token_urlsafe(32)
        with self.session.begin() as session:
            session.add(ApiKey(name=name, role=role, key_hash=hash_key(key), created_at=utcnow()))
        return key

    def key_by_hash(self, key_hash: str) -> StoredKey | None:
        with self.session() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None)))
            return None if row is None else _stored_key(row)

    def touch_key(self, key_id: int) -> None:
        with self.session.begin() as session:
            session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))

    def revoke_key(self, name: str) -> bool:
        with self.session.begin() as session:
            result = session.execute(
                update(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
            )
            return result.rowcount > 0

    def keys(self) -> list[StoredKey]:
        with self.session() as session:
            return [_stored_key(row) for row in session.scalars(select(ApiKey).order_by(ApiKey.name))]


def _stored_key(row: ApiKey) -> StoredKey:
    return StoredKey(
        id=row.id,
        name=row.name,
        role=row.role,
        created_at=as_utc(row.created_at),
        revoked_at=as_utc(row.revoked_at),
        last_used_at=as_utc(row.last_used_at),
    )
