"""The gate's storage: settings, the blocked-send log and API keys, behind one small API."""
from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gateway.domain import SOURCES, DeliveryState
from gateway.store.models import (
    ApiKey,
    BlockedSend,
    GateSettings,
    MarketoCalls,
    MirrorUnsubscribe,
    SyncState,
    WebhookDelivery,
)

SETTINGS_ID = 1
SYNC_ID = 1
CALL_KINDS = ("token", "lookup", "sync")
# Marketo's quota counts REST calls; the identity endpoint is free.
QUOTA_KINDS = ("lookup", "sync")
IN_CHUNK = 900  # bound parameters per IN (...) query, under SQLite's limit on every version
# How long a signed callout's answer is kept for repeats of its webhook-id (a sender's retries re-sign with a
# fresh timestamp, so the timestamp window does not bound them); the worker drops older ones.
DELIVERY_RETENTION = timedelta(days=7)


class LeaseLost(Exception):
    """Another worker holds the sync lease now: this one must stop writing."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything the gate writes is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def storable_text(value):
    """Callers' strings as every engine stores them: PostgreSQL's text cannot hold a NUL character."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


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
class SyncStatus:
    load_status: str  # not_started, loading, complete
    load_started_at: datetime | None
    load_window_start: datetime | None
    load_export_id: str | None
    load_finished_at: datetime | None
    changes_token: str | None
    last_success_at: datetime | None
    last_attempt_at: datetime | None
    last_error: str | None
    lease_owner: str | None
    lease_until: datetime | None


@dataclass(frozen=True)
class CallCounts:
    day: date
    used: int = 0
    token: int = 0
    lookup: int = 0
    sync: int = 0


@dataclass(frozen=True)
class StoredKey:
    id: int
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    sources: tuple[str, ...] | None = None  # None: any source
    require_signature: bool = False
    signing_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class NewKey:
    """What `create_key` hands back once: the key, and the signing secret when the key requires signatures."""

    key: str
    signing_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DeliveryClaim:
    """The outcome of claiming a signed callout's webhook-id.

    state: see DeliveryState; `status` and `body` are the kept answer of a `done` delivery.
    """

    id: int | None
    state: DeliveryState
    status: int | None = None
    body: str | None = None


class Store:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.session = sessionmaker(engine, expire_on_commit=False)

    # settings -------------------------------------------------------------
    def settings(self) -> Settings:
        with self.session() as session:
            return _settings(session.get(GateSettings, SETTINGS_ID))

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

    def settings_and_sync(self) -> tuple[Settings, SyncStatus]:
        """What every check needs to know first, in one session."""
        with self.session() as session:
            return _settings(session.get(GateSettings, SETTINGS_ID)), _sync_status(session.get(SyncState, SYNC_ID))

    # mirror --------------------------------------------------------------
    def unsubscribed_among(self, emails: Sequence[str]) -> set[str]:
        found: set[str] = set()
        with self.session() as session:
            for start in range(0, len(emails), IN_CHUNK):
                chunk = emails[start:start + IN_CHUNK]
                found.update(session.scalars(select(MirrorUnsubscribe.email).where(MirrorUnsubscribe.email.in_(chunk))))
        return found

    def mirror_size(self) -> int:
        with self.session() as session:
            return session.scalar(select(func.count()).select_from(MirrorUnsubscribe))

    def apply_mirror_changes(self, owner: str, *, unsubscribed: Sequence[str] = (), subscribed: Sequence[str] = (),
                             state: dict | None = None) -> None:
        """Mirror rows and the sync position move together, and only while `owner` holds the lease."""
        now = utcnow()
        with self.session.begin() as session:
            self._fence(session, owner, state or {})
            for start in range(0, len(subscribed), IN_CHUNK):
                chunk = list(subscribed[start:start + IN_CHUNK])
                session.execute(delete(MirrorUnsubscribe).where(MirrorUnsubscribe.email.in_(chunk)))
            for start in range(0, len(unsubscribed), IN_CHUNK):
                chunk = list(dict.fromkeys(unsubscribed[start:start + IN_CHUNK]))
                present = set(session.scalars(select(MirrorUnsubscribe.email).where(MirrorUnsubscribe.email.in_(chunk))))
                new = [{"email": email, "changed_at": now} for email in chunk if email not in present]
                if new:
                    session.execute(insert(MirrorUnsubscribe), new)

    # sync state and lease -----------------------------------------------
    def sync_status(self) -> SyncStatus:
        with self.session() as session:
            return _sync_status(session.get(SyncState, SYNC_ID))

    def acquire_sync_lease(self, owner: str, seconds: float) -> bool:
        now = utcnow()
        with self.session.begin() as session:
            result = session.execute(
                update(SyncState)
                .where(SyncState.id == SYNC_ID)
                .where((SyncState.lease_owner.is_(None)) | (SyncState.lease_until < now) | (SyncState.lease_owner == owner))
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=seconds))
            )
            return result.rowcount == 1

    def renew_sync_lease(self, owner: str, seconds: float) -> None:
        with self.session.begin() as session:
            self._fence(session, owner, {"lease_until": utcnow() + timedelta(seconds=seconds)})

    def release_sync_lease(self, owner: str) -> None:
        with self.session.begin() as session:
            session.execute(
                update(SyncState).where(SyncState.id == SYNC_ID, SyncState.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    def update_sync_state(self, owner: str, **values) -> None:
        with self.session.begin() as session:
            self._fence(session, owner, values)

    def reset_sync_state(self) -> None:
        with self.session.begin() as session:
            session.execute(delete(MirrorUnsubscribe))
            session.execute(
                update(SyncState).where(SyncState.id == SYNC_ID).values(
                    load_status="not_started", load_started_at=None, load_window_start=None, load_export_id=None,
                    load_finished_at=None, changes_token=None, last_success_at=None, last_attempt_at=None,
                    last_error=None, lease_owner=None, lease_until=None,
                )
            )

    @staticmethod
    def _fence(session: Session, owner: str, values: dict) -> None:
        result = session.execute(
            update(SyncState).where(SyncState.id == SYNC_ID, SyncState.lease_owner == owner)
            .values(lease_owner=owner, **values)
        )
        if result.rowcount != 1:
            raise LeaseLost(f"sync lease is no longer held by {owner}")

    # Marketo call accounting ----------------------------------------------
    def take_call(self, day: date, kind: str, cap: int | None) -> bool:
        """Count one call of `kind` on `day`; for quota kinds only while fewer than `cap` were used. Atomic."""
        with self.session.begin() as session:
            if session.get(MarketoCalls, day) is None:
                self._insert_day(session, day)
            statement = update(MarketoCalls).where(MarketoCalls.day == day)
            counter = getattr(MarketoCalls, kind)
            if kind in QUOTA_KINDS:
                statement = statement.values({counter: counter + 1, MarketoCalls.used: MarketoCalls.used + 1})
                if cap is not None:
                    statement = statement.where(MarketoCalls.used < cap)
            else:
                statement = statement.values({counter: counter + 1})
            return session.execute(statement).rowcount == 1

    @staticmethod
    def _insert_day(session: Session, day: date) -> None:
        # Two processes may both find the day missing; the loser's insert must not fail its call.
        dialect = session.get_bind().dialect.name
        row = {"day": day, "used": 0, "token": 0, "lookup": 0, "sync": 0}
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        session.execute(dialect_insert(MarketoCalls).values(row).on_conflict_do_nothing(index_elements=["day"]))

    def call_counts(self, day: date) -> CallCounts:
        with self.session() as session:
            row = session.get(MarketoCalls, day)
            if row is None:
                return CallCounts(day)
            return CallCounts(day, row.used, row.token, row.lookup, row.sync)

    # blocked-send log ------------------------------------------------------
    def log_blocked_sends(self, entries: Sequence[BlockedSendEntry], at: datetime | None = None) -> None:
        """All rows of one check in one transaction: the log holds a check's blocks entirely or not at all."""
        if not entries:
            return
        at = at or utcnow()
        rows = [{"at": at, **{k: storable_text(v) for k, v in entry.__dict__.items()}} for entry in entries]
        with self.session.begin() as session:
            session.execute(insert(BlockedSend), rows)

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
    def create_key(self, name: str, role: str, *, sources: Sequence[str] | None = None,
                   require_signature: bool = False) -> NewKey:
        """Returns the new key; only its hash is stored, so this is the one time it can be seen.

        With `require_signature` the key also gets a Standard Webhooks signing secret, `whsec_<base64>`.
        The secret is stored as it is, not hashed (verifying an HMAC needs the secret itself) and not
        derived from SECRET_KEY + name + creation time: a derived secret would tie every Salesforce org's
        signatures to SECRET_KEY, so rotating SECRET_KEY (which signs admin sessions) would silently break
        them all, and it would hang on a timestamp reading back identically from SQLite and PostgreSQL.
        Storing it costs little: a copy of the database alone still cannot call the gate, because the
        bearer key that must come with every signed request is kept only as its SHA-256.
        """
        sources = tuple(dict.fromkeys(sources or ()))
        unknown = [source for source in sources if source not in SOURCES]
        if unknown:
            raise ValueError(f"unknown sources {unknown}; a key's sources are among {', '.join(SOURCES)}")
        key = "gk_" + secrets.token_urlsafe(32)
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode() if require_signature else None
        with self.session.begin() as session:
            session.add(ApiKey(
                name=name, role=role, key_hash=hash_key(key), created_at=utcnow(),
                sources=",".join(sources) or None, require_signature=require_signature, signing_secret=secret,
            ))
        return NewKey(key, secret)

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

    # deliveries of signed callouts -------------------------------------------
    def claim_delivery(self, key_id: int, webhook_id: str, request_hash: str, *,
                       stale_after: timedelta) -> DeliveryClaim:
        """Claim a webhook-id for one key before its check runs; the unique (key_id, webhook_id) decides races.

        The claim is its own committed transaction, so a concurrent delivery of the same id fails its insert
        and finds the row in progress. A claim left in progress longer than `stale_after` (its process died)
        may be taken over by one later delivery.
        """
        for _attempt in range(3):
            now = utcnow()
            try:
                with self.session.begin() as session:
                    row = WebhookDelivery(key_id=key_id, webhook_id=webhook_id, request_hash=request_hash,
                                          created_at=now)
                    session.add(row)
                    session.flush()
                    return DeliveryClaim(row.id, DeliveryState.CLAIMED)
            except IntegrityError:
                pass  # the id is claimed already: see by whom and how far it got
            with self.session.begin() as session:
                row = session.scalar(select(WebhookDelivery).where(
                    WebhookDelivery.key_id == key_id, WebhookDelivery.webhook_id == webhook_id))
                if row is None:
                    continue  # released between our insert and this read: claim it again
                if row.request_hash != request_hash:
                    return DeliveryClaim(row.id, DeliveryState.MISMATCH)
                if row.status is not None:
                    return DeliveryClaim(row.id, DeliveryState.DONE, row.status, row.response_body)
                taken = session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id == row.id, WebhookDelivery.status.is_(None),
                           WebhookDelivery.created_at < now - stale_after)
                    .values(created_at=now)
                    .execution_options(synchronize_session=False)  # SQLite's naive datetimes can't be evaluated here
                ).rowcount
                return DeliveryClaim(row.id, DeliveryState.CLAIMED if taken == 1 else DeliveryState.IN_PROGRESS)
        return DeliveryClaim(None, DeliveryState.IN_PROGRESS)

    def complete_delivery(self, delivery_id: int, status: int, body: str) -> None:
        with self.session.begin() as session:
            session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                .values(status=status, response_body=body, completed_at=utcnow())
            )

    def release_delivery(self, delivery_id: int) -> None:
        """Forget a claim whose request was not answered with a 2xx: a retry of that id runs afresh."""
        with self.session.begin() as session:
            session.execute(
                delete(WebhookDelivery).where(WebhookDelivery.id == delivery_id, WebhookDelivery.status.is_(None))
            )

    def prune_deliveries(self, older_than: datetime) -> int:
        with self.session.begin() as session:
            return session.execute(delete(WebhookDelivery).where(WebhookDelivery.created_at < older_than)).rowcount


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


def _sync_status(row: SyncState) -> SyncStatus:
    return SyncStatus(
        load_status=row.load_status,
        load_started_at=as_utc(row.load_started_at),
        load_window_start=as_utc(row.load_window_start),
        load_export_id=row.load_export_id,
        load_finished_at=as_utc(row.load_finished_at),
        changes_token=row.changes_token,
        last_success_at=as_utc(row.last_success_at),
        last_attempt_at=as_utc(row.last_attempt_at),
        last_error=row.last_error,
        lease_owner=row.lease_owner,
        lease_until=as_utc(row.lease_until),
    )


def _stored_key(row: ApiKey) -> StoredKey:
    return StoredKey(
        id=row.id,
        name=row.name,
        role=row.role,
        created_at=as_utc(row.created_at),
        revoked_at=as_utc(row.revoked_at),
        last_used_at=as_utc(row.last_used_at),
        sources=tuple(row.sources.split(",")) if row.sources else None,
        require_signature=bool(row.require_signature),
        signing_secret=row.signing_secret,
    )
