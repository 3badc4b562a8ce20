"""Marketo pushes, the sync confirms: what the gate does with a push from Marketo's webhook.

- An unsubscribe is written to the mirror at once (`MirrorRepository.push_unsubscribe`): every web process
  denies the address from its next check, whether or not the mirror is fresh (checks.py), with no call to
  Marketo.
- A push saying *subscribed* is never believed alone: anyone who can reach the endpoint could send one. If
  the mirror holds the address, one lookup (counted and budgeted like any live lookup) asks Marketo, after
  the answer has gone out, and the row goes only if Marketo confirms. If the lookup cannot be made, the next
  sync's change stream decides, as it would without the push.
- Marketo does not retry a webhook, so nothing here waits for Marketo before answering.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from gateway.marketo.interfaces import MarketoService
from gateway.store import Store, utcnow

log = logging.getLogger(__name__)

CONFIRM_TIMEOUT = 10.0  # seconds for one confirming lookup; nobody waits on it
MAX_PENDING_CONFIRMATIONS = 1000  # past this, a flood of "subscribed" pushes is left to the sync


@dataclass(frozen=True)
class PushOutcome:
    email: str | None
    applied: bool  # the mirror changed now
    confirming: bool  # a lookup will ask Marketo whether a pushed "subscribed" holds


class PushService:
    def __init__(self, store: Store, marketo: MarketoService, *, confirm_timeout: float = CONFIRM_TIMEOUT,
                 max_pending: int = MAX_PENDING_CONFIRMATIONS):
        self.store = store
        self.marketo = marketo
        self.confirm_timeout = confirm_timeout
        self.max_pending = max_pending
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None  # made on the first confirmation: the worker never needs it

    def take(self, email: str | None, unsubscribed: bool) -> PushOutcome:
        """`email` is the address's key; None (a lead without an email) changes nothing."""
        if email is None:
            return PushOutcome(email, applied=False, confirming=False)
        if unsubscribed:
            self.store.mirror.push_unsubscribe(email)
            return PushOutcome(email, applied=True, confirming=False)
        if not self.store.mirror.unsubscribed_among([email]):
            return PushOutcome(email, applied=False, confirming=False)  # nothing to undo
        return PushOutcome(email, applied=False, confirming=self._confirm_later(email))

    def _confirm_later(self, email: str) -> bool:
        with self._lock:
            if email in self._pending:
                return True
            if len(self._pending) >= self.max_pending:
                return False
            self._pending.add(email)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="marketo-push-confirm")
            executor = self._executor
        executor.submit(self._confirm, email)
        return True

    def _confirm(self, email: str) -> None:
        try:
            asked_at = utcnow()
            result = self.marketo.lookup_emails([email], timeout=self.confirm_timeout)
            if result.failed:
                log.info("a pushed re-subscribe could not be confirmed now (%s); the next sync decides",
                         next(iter(result.failed.values())).message)
            elif email in result.not_found or result.unsubscribed.get(email) is False:
                self.store.mirror.forget_resubscribed(email, asked_at)
        except Exception:  # a background thread: log it, the sync remains the safety net
            log.exception("confirming a pushed re-subscribe failed; the next sync decides")
        finally:
            with self._lock:
                self._pending.discard(email)

    def wait_for_confirmations(self) -> None:
        """Let queued confirmations finish (tests, and a process that stops)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
