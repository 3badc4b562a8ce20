"""The resolution chain: one verdict per unique address, then decisions and the blocked-send log.

This is the only place that knows about the setting, the cache, Marketo and the failure policy;
every verdict says which of them answered (`checked_via`).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from gateway.cache import TTLCache
from gateway.config import GateConfig
from gateway.connection import CONNECTED_MESSAGE, describe_marketo_error
from gateway.decisions import CheckRequest, MessageResult, Verdict, decide
from gateway.domain import CheckedVia, Decision, ReasonCode
from gateway.events import emit, mask_address
from gateway.marketo import (
    MarketoAuthError,
    MarketoBudgetExhausted,
    MarketoConfigError,
    MarketoError,
    MarketoQuotaExceeded,
)
from gateway.marketo.interfaces import MarketoService
from gateway.metrics import count_check
from gateway.mirror import is_mirror_fresh
from gateway.salesforce.tasks import outbox_tasks
from gateway.mirror_view import MirrorView
from gateway.store import BlockedSendEntry, Settings, Store, SyncStatus

log = logging.getLogger(__name__)

CHECK_DISABLED = Verdict(Decision.ALLOW, ReasonCode.CHECK_DISABLED, CheckedVia.SETTING)
MIRROR_UNSUBSCRIBED = Verdict(Decision.DENY, ReasonCode.UNSUBSCRIBED, CheckedVia.MIRROR)
MIRROR_ALLOWED = Verdict(Decision.ALLOW, ReasonCode.ALLOWED, CheckedVia.MIRROR)
LIVE_UNSUBSCRIBED = Verdict(Decision.DENY, ReasonCode.UNSUBSCRIBED, CheckedVia.LIVE)
LIVE_ALLOWED = Verdict(Decision.ALLOW, ReasonCode.ALLOWED, CheckedVia.LIVE)
LIVE_NOT_IN_MARKETO = Verdict(Decision.ALLOW, ReasonCode.NOT_IN_MARKETO, CheckedVia.LIVE)
CACHE_VERDICTS = {
    (decision, reason): Verdict(decision, reason, CheckedVia.CACHE) for decision in Decision for reason in ReasonCode
}
# Leaves time, inside the caller's deadline, to write the log and answer after Marketo gives up, and for the
# answer to reach a caller on a busy machine: with 0.5 s, 1-3 % of answers at 50 checks/s reached the client
# after 3 s on a loaded machine (bench/bench_faults.py, slow_marketo). A third of the deadline, at most 1 s.
ANSWER_MARGIN = 1.0


def live_deadline(started: float, check_timeout: float) -> float:
    """The `time.monotonic()` by which Marketo (and Salesforce's record ids) must have answered a check."""
    return started + check_timeout - min(ANSWER_MARGIN, check_timeout / 3)


@dataclass(frozen=True)
class CheckOutcome:
    check_id: str
    enabled: bool
    results: list[MessageResult]


def new_check_id() -> str:
    return "chk_" + os.urandom(16).hex()  # 32 random hex digits, as uuid4().hex but without building a UUID


def cache_verdict(decision: Decision, reason_code: ReasonCode) -> Verdict:
    """The cache's answer as a shared Verdict: no object per address, and /metrics tallies them by identity."""
    return CACHE_VERDICTS.get((decision, reason_code)) or Verdict(decision, reason_code, CheckedVia.CACHE)


class CheckService:
    def __init__(self, store: Store, marketo: MarketoService, cache: TTLCache, config: GateConfig):
        self.store = store
        self.marketo = marketo
        self.cache = cache
        self.config = config
        self._context: tuple[float, Settings, SyncStatus] | None = None
        # Polled as often as the settings are re-read (at most once a second by default).
        self.mirror_view = MirrorView(store.mirror, poll_seconds=config.settings_cache_seconds)

    def context(self) -> tuple[Settings, SyncStatus]:
        """The settings and sync state, re-read at most every GATEWAY_SETTINGS_CACHE_SECONDS in a process.

        Reading them is half the cost of a check; a switch flipped in another process is seen that
        much later, a switch flipped through this process at once (see `forget_context`).
        """
        now = time.monotonic()
        cached = self._context
        if cached is not None and now - cached[0] < self.config.settings_cache_seconds:
            return cached[1], cached[2]
        with self.store.session() as session:  # one session for both: half the cost of a check is here
            settings = self.store.settings.get(session=session)
            sync = self.store.sync.status(session=session)
        self._context = (now, settings, sync)
        return settings, sync

    def forget_context(self) -> None:
        self._context = None

    def failure_mode(self, settings: Settings) -> str:
        return settings.failure_mode or self.config.failure_mode

    def run(self, request: CheckRequest, started: float | None = None, *, dry_run: bool = False) -> CheckOutcome:
        """`dry_run`: answer as a check would, but log no blocked send (the console's "Check an address")."""
        started = time.monotonic() if started is None else started
        settings, sync = self.context()
        deadline = live_deadline(started, self.config.check_timeout)
        verdicts = self.resolve(request.addresses(), settings, sync, deadline)
        results = decide(request, verdicts)
        check_id = new_check_id()
        if not dry_run:
            entries = blocked_entries(check_id, request, results)
            if entries and self.config.salesforce_configured and self.config.salesforce_log_blocked_sends:
                # The Tasks Salesforce is owed land with the log rows or not at all; the worker sends them.
                with self.store.transaction() as session:
                    self.store.blocked_sends.log(entries, session=session)
                    self.store.outbox.add_tasks(outbox_tasks(request, entries), session=session)
            else:
                self.store.blocked_sends.log(entries)
            report_check(request, verdicts, entries, time.monotonic() - started)
        return CheckOutcome(check_id, settings.marketo_check_enabled, results)

    def resolve(self, addresses: list[str], settings: Settings, sync: SyncStatus, deadline: float) -> dict[str, Verdict]:
        if not settings.marketo_check_enabled:
            return dict.fromkeys(addresses, CHECK_DISABLED)
        if is_mirror_fresh(sync, self.config.mirror_max_age):
            unsubscribed = self.mirror_view.unsubscribed_among(addresses)
            return {a: MIRROR_UNSUBSCRIBED if a in unsubscribed else MIRROR_ALLOWED for a in addresses}
        # An unsubscribe Marketo pushed (POST /v1/hooks/marketo) is denied even while the mirror is stale,
        # ahead of a cached "allowed" and without a call to Marketo.
        verdicts: dict[str, Verdict] = dict.fromkeys(self.store.mirror.pushed_among(addresses), MIRROR_UNSUBSCRIBED)
        open_addresses = [address for address in addresses if address not in verdicts]
        verdicts.update({
            address: cache_verdict(cached.decision, cached.reason_code)
            for address, cached in self.cache.get_many(open_addresses).items()
        })
        missing = [address for address in addresses if address not in verdicts]
        if missing:
            verdicts.update(self._ask_marketo(missing, settings, deadline))
        return verdicts

    def _ask_marketo(self, addresses: list[str], settings: Settings, deadline: float) -> dict[str, Verdict]:
        decision = Decision.DENY if self.failure_mode(settings) == Decision.DENY else Decision.ALLOW
        policy = Verdict(decision, ReasonCode.UNVERIFIED, CheckedVia.POLICY)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return dict.fromkeys(addresses, policy)
        try:
            result = self.marketo.lookup_emails(addresses, timeout=remaining)
        except MarketoError as error:
            self._note_connection(settings, {"*": error})
            return dict.fromkeys(addresses, policy)
        live: dict[str, Verdict] = {}
        for address, unsubscribed in result.unsubscribed.items():
            live[address] = LIVE_UNSUBSCRIBED if unsubscribed else LIVE_ALLOWED
        for address in result.not_found:
            live[address] = LIVE_NOT_IN_MARKETO
        self.cache.put_many(live)
        self._note_connection(settings, result.failed)
        return {**live, **dict.fromkeys(result.failed, policy)}

    def _note_connection(self, settings: Settings, failures: dict[str, MarketoError]) -> None:
        """Keep the admin's view of the Marketo connection true without a write on every check."""
        lasting = [e for e in failures.values() if isinstance(e, LASTING_FAILURES)]
        if lasting:
            message = describe_marketo_error(lasting[0])
            if settings.marketo_connected is not False or settings.marketo_message != message:
                self.store.settings.record_marketo_status(False, message)
        elif not failures and settings.marketo_connected is False:
            self.store.settings.record_marketo_status(True, CONNECTED_MESSAGE)


# Failures that will not pass by retrying: the admin has to know.
LASTING_FAILURES = (MarketoAuthError, MarketoConfigError, MarketoQuotaExceeded, MarketoBudgetExhausted)


MASKED_IN_EVENT = 10  # recipients named (masked) in one check.denied line; `blocked` says how many in all


def report_check(request: CheckRequest, verdicts: dict[str, Verdict], entries: list[BlockedSendEntry],
                 seconds: float) -> None:
    """Count the check in /metrics; a check that kept anyone from a message is also a `check.denied` event.

    An allowed check is only counted: it is most checks, and its recipients are nobody's business in a log.
    """
    invalid = sum(1 for message in request.messages for recipient in message.recipients if recipient.email is None)
    count_check(request.source, request.workflow, bool(entries), verdicts.values(), invalid, seconds)
    if entries:
        recipients = list(dict.fromkeys(entry.recipient for entry in entries))
        emit("check.denied", check_id=entries[0].check_id, source=str(request.source),
             workflow=str(request.workflow), blocked=len(recipients),
             reasons=sorted({str(entry.reason_code) for entry in entries}),
             checked_via=sorted({str(verdicts[a].checked_via) if a in verdicts else CheckedVia.VALIDATION.value
                                 for a in recipients}),
             recipients=[mask_address(address) for address in recipients[:MASKED_IN_EVENT]])


def blocked_entries(check_id: str, request: CheckRequest, results: list[MessageResult]) -> list[BlockedSendEntry]:
    """One log row per address kept from a message: a denied message's culprits, a group send's dropped."""
    entries = []
    for message, result in zip(request.messages, results):
        if not result.blocked:
            continue  # most messages: nothing to log
        reasons = {r.email: r.reason_code for r in result.recipients if r.decision == Decision.DENY}
        for address in result.blocked:
            entries.append(
                BlockedSendEntry(
                    check_id=check_id,
                    source=request.source,
                    workflow=request.workflow,
                    sender=message.sender or request.sender,
                    recipient=address[:320],
                    reason_code=reasons[address],
                    message_id=message.id,
                )
            )
    return entries
