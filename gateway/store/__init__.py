"""The gate's storage: one repository per concern over one engine, each handing out frozen dataclasses.

    store = Store(engine)
    store.settings      the admin's switches and the last Marketo connection test   (settings.py)
    store.keys          API keys                                                     (keys.py)
    store.blocked_sends the log of blocked sends                                     (blocked_sends.py)
    store.mirror        the mirror of Marketo's unsubscribed addresses               (mirror.py)
    store.sync          the mirror's load/sync position and the sync lease           (sync_state.py)
    store.calls         Marketo calls counted per quota day                          (calls.py)
    store.deliveries    signed callouts by webhook-id                                (deliveries.py)
    store.admins        the console's admin accounts and their lockouts              (admins.py)
    store.audit         every change of a setting: who, when, old and new            (audit.py)
    store.outbox        Tasks and opt-outs owed to Salesforce                        (outbox.py)
    store.salesforce    how the calls to Salesforce went; the outbox's back-off      (salesforce_state.py)
    store.circuit       Marketo's circuit breaker, shared by every process           (circuit.py)

A new concern gets its own module with a `Repository` subclass (repository.py) and an attribute here.
Writes of several repositories that must land together share one transaction:

    with store.transaction() as session:
        store.blocked_sends.log(entries, session=session)
        ...
"""
from __future__ import annotations

from contextlib import AbstractContextManager

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from gateway.store.admins import LOCKOUT, MAX_FAILED_SIGN_INS, Admin, AdminExists, AdminsRepository
from gateway.store.audit import AuditRepository, Change, RecordedChange
from gateway.store.blocked_sends import BlockedSendEntry, BlockedSendFilter, BlockedSendsRepository, LoggedBlockedSend
from gateway.store.calls import CALL_KINDS, QUOTA_KINDS, CallCounts, CallsRepository
from gateway.store.circuit import CircuitRepository, CircuitState
from gateway.store.common import IN_CHUNK, as_utc, hash_key, storable_text, utcnow
from gateway.store.deliveries import DELIVERY_RETENTION, DeliveriesRepository, DeliveryClaim
from gateway.store.keys import KeysRepository, NewKey, StoredKey
from gateway.store.mirror import MirrorRepository
from gateway.store.outbox import OutboxEntry, OutboxRepository, OutboxSummary, OutboxTask
from gateway.store.salesforce_state import SalesforceStateRepository, SalesforceStatus
from gateway.store.settings import SETTINGS_ID, Settings, SettingsRepository
from gateway.store.sync_state import SYNC_ID, LeaseLost, SyncStateRepository, SyncStatus

__all__ = [
    "CALL_KINDS", "DELIVERY_RETENTION", "IN_CHUNK", "QUOTA_KINDS", "SETTINGS_ID", "SYNC_ID",
    "LOCKOUT", "MAX_FAILED_SIGN_INS", "Admin", "AdminExists", "BlockedSendFilter", "Change", "RecordedChange",
    "BlockedSendEntry", "CallCounts", "CircuitState", "DeliveryClaim", "LeaseLost", "LoggedBlockedSend", "NewKey", "OutboxEntry",
    "OutboxSummary", "OutboxTask", "SalesforceStatus", "Settings",
    "Store", "StoredKey", "SyncStatus",
    "as_utc", "hash_key", "storable_text", "utcnow",
]


class Store:
    """Owns the engine and the sessionmaker; builds the repositories over them."""

    def __init__(self, engine: Engine):
        self.engine = engine
        # A read spanning repositories: `with store.session() as session:` and pass `session=` along.
        self.session = sessionmaker(engine, expire_on_commit=False)
        self.settings = SettingsRepository(self.session)
        self.keys = KeysRepository(self.session)
        self.blocked_sends = BlockedSendsRepository(self.session)
        self.mirror = MirrorRepository(self.session)
        self.sync = SyncStateRepository(self.session)
        self.calls = CallsRepository(self.session)
        self.deliveries = DeliveriesRepository(self.session)
        self.admins = AdminsRepository(self.session)
        self.audit = AuditRepository(self.session)
        self.outbox = OutboxRepository(self.session)
        self.salesforce = SalesforceStateRepository(self.session)
        self.circuit = CircuitRepository(self.session)

    def transaction(self) -> AbstractContextManager[Session]:
        """One transaction for several repositories' writes, committed when the block ends without an error."""
        return self.session.begin()

    def reset_mirror(self) -> None:
        """Forget the mirror and where its sync stood, in one transaction: the next sync loads it from scratch."""
        with self.transaction() as session:
            self.mirror.clear(session=session)
            self.sync.reset(session=session)
