"""The gate's tables. Schema changes go through Alembic migrations beside this file."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BigId = BigInteger().with_variant(Integer, "sqlite")

EMAIL_LENGTH = 320  # RFC 5321: 64 local + @ + 255 domain


class Base(DeclarativeBase):
    pass


class GateSettings(Base):
    """One row (id 1): the global switches an admin controls."""

    __tablename__ = "gate_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    marketo_check_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # None: follow GATEWAY_FAILURE_MODE from the environment.
    failure_mode: Mapped[str | None] = mapped_column(String(8), nullable=True)
    marketo_connected: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    marketo_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    marketo_checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_by: Mapped[str | None] = mapped_column(String(100), nullable=True)


class BlockedSend(Base):
    """One recipient kept from one message: a denied message's culprit or a dropped group-send recipient."""

    __tablename__ = "blocked_sends"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    check_id: Mapped[str] = mapped_column(String(40), nullable=False, index=True)
    source: Mapped[str] = mapped_column(String(20), nullable=False)
    workflow: Mapped[str] = mapped_column(String(32), nullable=False)
    sender: Mapped[str | None] = mapped_column(String(EMAIL_LENGTH), nullable=True)
    recipient: Mapped[str] = mapped_column(String(EMAIL_LENGTH), nullable=False)
    reason_code: Mapped[str] = mapped_column(String(32), nullable=False)
    message_id: Mapped[str | None] = mapped_column(String(255), nullable=True)


class ApiKey(Base):
    """A key made by `gateway keys create`: only its SHA-256 is kept."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Comma-separated sources (`salesforce`, `outlook`, `gmail`, `web`) the key may call for; NULL: any.
    sources: Mapped[str | None] = mapped_column(String(64), nullable=True)
    require_signature: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    # `whsec_<base64>`, kept as is: see KeysRepository.create (store/keys.py) for why it is stored rather than derived.
    signing_secret: Mapped[str | None] = mapped_column(String(100), nullable=True)


class WebhookDelivery(Base):
    """One signed callout, by its `webhook-id`: claimed before the check runs, then holding the answer given.

    `status` NULL means the check is still running. The unique (key_id, webhook_id) is what keeps two
    concurrent deliveries of one id from both running the check.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("key_id", "webhook_id", name="uq_webhook_deliveries_key_webhook"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key_id: Mapped[int] = mapped_column(Integer, ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False)
    webhook_id: Mapped[str] = mapped_column(String(255), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)  # SHA-256 of path and body
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class MirrorUnsubscribe(Base):
    """An address Marketo holds as unsubscribed, keyed like Marketo's durable unsubscribe: by email."""

    __tablename__ = "mirror_unsubscribes"

    email: Mapped[str] = mapped_column(String(EMAIL_LENGTH), primary_key=True)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # The mirror write (sync_state.mirror_version) that added the row: what in-process views follow.
    version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0", index=True)


class MirrorRemoval(Base):
    """An address taken out of the mirror (re-subscribed) by mirror write `version`, so views drop it too."""

    __tablename__ = "mirror_removals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False, index=True)
    email: Mapped[str] = mapped_column(String(EMAIL_LENGTH), nullable=False)


class SyncState(Base):
    """One row (id 1): where the mirror's load and sync stand, and which worker holds the sync lease."""

    __tablename__ = "sync_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    load_status: Mapped[str] = mapped_column(String(16), nullable=False, default="not_started")
    load_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    load_window_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    load_export_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    load_finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    changes_token: Mapped[str | None] = mapped_column(String(255), nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The mirror's change sequence: bumped by every mirror write; a view older than the reset rebuilds.
    mirror_version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")
    mirror_reset_version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")


class MarketoCalls(Base):
    """Calls made to Marketo on one quota day (US Central), by kind; `used` is what counts against the quota."""

    __tablename__ = "marketo_calls"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    used: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    token: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    lookup: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    sync: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
