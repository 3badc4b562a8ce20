"""The gate's tables. Schema changes go through Alembic migrations beside this file."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, DateTime, ForeignKey, Integer, JSON, String, Text, UniqueConstraint, false
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
    """An address Marketo holds as unsubscribed, keyed like Marketo's durable unsubscribe: by email.

    `email` is the address's key (gateway.addresses.address_key), so every spelling of it is one row.
    """

    __tablename__ = "mirror_unsubscribes"

    email: Mapped[str] = mapped_column(String(EMAIL_LENGTH), primary_key=True)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # When Marketo last pushed this unsubscribe (POST /v1/hooks/marketo); NULL when only the sync saw it.
    pushed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
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
    # The load's export jobs, one per window (or one for a list): gateway.mirror.LoadPlan's rows.
    load_plan: Mapped[list | None] = mapped_column(JSON, nullable=True)
    load_source: Mapped[str | None] = mapped_column(String(300), nullable=True)  # "windows" or the list
    changes_token: Mapped[str | None] = mapped_column(String(255), nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The mirror's change sequence: bumped by every mirror write; a view older than the reset rebuilds.
    mirror_version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")
    mirror_reset_version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")


class MarketoCircuit(Base):
    """One row (id 1): Marketo's circuit breaker as every process of the app sees it (gateway/marketo/breaker.py)."""

    __tablename__ = "marketo_circuit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    is_open: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # While open: the earliest moment the next probe may be sent, by whichever process claims it first.
    next_probe_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    opened_total: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")
    probes_total: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")


class MarketoCalls(Base):
    """Calls made to Marketo on one quota day (US Central), by kind; `used` is what counts against the quota."""

    __tablename__ = "marketo_calls"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    used: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    token: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    lookup: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    sync: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Calls that got no answer or a 5xx: given back to `used` and their kind, counted here instead.
    unanswered: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class AdminAccount(Base):
    """A person who signs in to the console, made by `gateway admins create`: only a hash of the password is kept."""

    __tablename__ = "admin_accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    failed_attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SettingsChange(Base):
    """One change of one setting: who made it, when, through what (console or admin API), old and new value."""

    __tablename__ = "settings_changes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    actor: Mapped[str] = mapped_column(String(100), nullable=False)
    via: Mapped[str] = mapped_column(String(16), nullable=False)  # console, api
    setting: Mapped[str] = mapped_column(String(64), nullable=False)
    old_value: Mapped[str | None] = mapped_column(String(255), nullable=True)
    new_value: Mapped[str | None] = mapped_column(String(255), nullable=True)


class SalesforceOutboxEntry(Base):
    """Something the gate owes Salesforce, written in the transaction that learnt it; the worker drains it.

    `kind` "task": a blocked recipient to log as a Task (written with the blocked-send row);
    `kind` "opt_out": an address the mirror learnt as unsubscribed, to mark HasOptedOutOfEmail (written
    with the mirror row). `status` moves pending → sending (claimed by one drain, `attempt_id`, until
    `claimed_until`) → sent, skipped (no Contact or Lead has the address) or failed (Salesforce refused the
    record: `error` holds its message). `marker` is written into the Task's Description, so a drain killed
    between Salesforce's answer and its own commit finds the Task it created instead of creating another.
    """

    __tablename__ = "salesforce_outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    marker: Mapped[str] = mapped_column(String(40), nullable=False, unique=True)
    recipient: Mapped[str] = mapped_column(String(EMAIL_LENGTH), nullable=False)
    check_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    source: Mapped[str | None] = mapped_column(String(20), nullable=True)
    workflow: Mapped[str | None] = mapped_column(String(32), nullable=True)
    sender: Mapped[str | None] = mapped_column(String(EMAIL_LENGTH), nullable=True)
    reason_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    message_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    owner_id: Mapped[str | None] = mapped_column(String(18), nullable=True)
    attempt_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    who_id: Mapped[str | None] = mapped_column(String(18), nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(18), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SalesforceState(Base):
    """One row (id 1): how the last calls to Salesforce went, and when the outbox may try again."""

    __tablename__ = "salesforce_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connected: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
