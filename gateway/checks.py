"""The resolution chain: one verdict per unique address, then decisions and the blocked-send log.

This is the only place that knows about the setting, the cache, Marketo and the failure policy;
every verdict says which of them answered (`checked_via`).
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from gateway.cache import TTLCache
from gateway.config import GateConfig
from gateway.decisions import ALLOW, DENY, CheckRequest, MessageResult, Verdict, decide
from gateway.marketo import (
    MarketoAuthError,
    MarketoBudgetExhausted,
    MarketoConfigError,
    MarketoError,
    MarketoQuotaExceeded,
)
from gateway.mirror import is_mirror_fresh
from gateway.store import BlockedSendEntry, Settings, Store, SyncStatus

log = logging.getLogger(__name__)

CHECK_DISABLED = Verdict(ALLOW, "check_disabled", "setting")
MIRROR_UNSUBSCRIBED = Verdict(DENY, "unsubscribed", "mirror")
MIRROR_ALLOWED = Verdict(ALLOW, "allowed", "mirror")
# Leaves time, inside the caller's deadline, to write the log and answer after Marketo gives up.
ANSWER_MARGIN = 0.25


@dataclass(frozen=True)
class CheckOutcome:
    check_id: str
    enabled: bool
    results: list[MessageResult]


def new_check_id() -> str:
    return "chk_" + uuid.uuid4().hex


class CheckService:
    def __init__(self, store: Store, marketo, cache: TTLCache, config: GateConfig):
        self.store = store
        self.marketo = marketo  # a MarketoClient, or None when Marketo is not configured
        self.cache = cache
        self.config = config
        self._context: tuple[float, Settings, SyncStatus] | None = None

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

    def run(self, request: CheckRequest, started: float | None = None) -> CheckOutcome:
        started = time.monotonic() if started is None else started
        settings, sync = self.context()
        deadline = started + self.config.check_timeout - ANSWER_MARGIN
        verdicts = self.resolve(request.addresses(), settings, sync, deadline)
        results = decide(request, verdicts)
        check_id = new_check_id()
        self.store.blocked_sends.log(blocked_entries(check_id, request, results))
        return CheckOutcome(check_id, settings.marketo_check_enabled, results)

    def resolve(self, addresses: list[str], settings: Settings, sync: SyncStatus, deadline: float) -> dict[str, Verdict]:
        if not settings.marketo_check_enabled:
            return dict.fromkeys(addresses, CHECK_DISABLED)
        if is_mirror_fresh(sync, self.config.mirror_max_age):
            unsubscribed = self.store.mirror.unsubscribed_among(addresses)
            return {a: MIRROR_UNSUBSCRIBED if a in unsubscribed else MIRROR_ALLOWED for a in addresses}
        verdicts: dict[str, Verdict] = {
            address: Verdict(cached.decision, cached.reason_code, "cache")
            for address, cached in self.cache.get_many(addresses).items()
        }
        missing = [address for address in addresses if address not in verdicts]
        if missing:
            verdicts.update(self._ask_marketo(missing, settings, deadline))
        return verdicts

    def _ask_marketo(self, addresses: list[str], settings: Settings, deadline: float) -> dict[str, Verdict]:
        policy = Verdict(DENY if self.failure_mode(settings) == "deny" else ALLOW, "unverified", "policy")
        if self.marketo is None:
            return dict.fromkeys(addresses, policy)
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
            live[address] = Verdict(DENY, "unsubscribed", "live") if unsubscribed else Verdict(ALLOW, "allowed", "live")
        for address in result.not_found:
            live[address] = Verdict(ALLOW, "not_in_marketo", "live")
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


CONNECTED_MESSAGE = "Connected to Marketo."
# Failures that will not pass by retrying: the admin has to know.
LASTING_FAILURES = (MarketoAuthError, MarketoConfigError, MarketoQuotaExceeded, MarketoBudgetExhausted)


def describe_marketo_error(error: MarketoError) -> str:
    if isinstance(error, MarketoAuthError):
        return f"Marketo refused the client id and secret: {error.message}"
    if isinstance(error, MarketoConfigError):
        return f"Marketo denied access (check the API user's permissions and IP allow-list): {error.message}"
    if isinstance(error, MarketoQuotaExceeded):
        return f"Marketo's daily API quota is used up: {error.message}"
    if isinstance(error, MarketoBudgetExhausted):
        return f"The gate stopped calling Marketo: {error.message}"
    return f"Marketo did not answer: {error.message}"


def blocked_entries(check_id: str, request: CheckRequest, results: list[MessageResult]) -> list[BlockedSendEntry]:
    """One log row per address kept from a message: a denied message's culprits, a group send's dropped."""
    entries = []
    for message, result in zip(request.messages, results):
        reasons = {r.email: r.reason_code for r in result.recipients if r.decision == DENY}
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
