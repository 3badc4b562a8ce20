"""Keeps the gate's mirror of Marketo's unsubscribed addresses: a full load, then Marketo's change stream.

- The full load walks 31-day `createdAt` windows with Bulk Lead Extract. Its position (the next window
  and the export job in flight) is saved after each step, so a worker that dies resumes where it stopped.
- The change stream is `leadchanges.json` for the `unsubscribed` field. It carries unsubscribes from an
  email's link and re-subscribes alike, in one call per idle sync. Its paging token is saved in the same
  transaction as the mirror rows it produced, so a page is applied entirely or will be read again.
- Only the worker holding the sync lease writes; every write checks it still holds it.
"""
from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.marketo import MarketoError, MarketoUnavailable
from gateway.marketo.client import is_marketo_true
from gateway.marketo.interfaces import MarketoService
from gateway.store import LeaseLost, Store, SyncStatus, utcnow

log = logging.getLogger(__name__)

EXPORT_FIELDS = ("id", "email", "unsubscribed")
WATCHED_FIELDS = ("unsubscribed",)
WINDOW = timedelta(days=31)  # Bulk Lead Extract's longest createdAt range
# The change stream starts this long before the load so that nothing that happens during it is missed.
LOAD_OVERLAP = timedelta(minutes=10)
LOOKUP_TIMEOUT = 30.0


class SyncStopped(Exception):
    """The worker was asked to stop while it waited for an export."""


@dataclass
class SyncReport:
    ran: bool  # False when another worker held the lease
    loaded_windows: int = 0
    change_pages: int = 0
    unsubscribed: int = 0
    subscribed: int = 0
    error: str | None = None


def marketo_email(value: object) -> str | None:
    """Addresses as Marketo holds them, matched like the gate's callers' addresses: trimmed, lowercase."""
    if not isinstance(value, str) or "@" not in value:
        return None
    return value.strip().lower() or None


def is_mirror_fresh(sync: SyncStatus, max_age: float, now: datetime | None = None) -> bool:
    if sync.load_status != "complete" or sync.last_success_at is None:
        return False
    return ((now or utcnow()) - sync.last_success_at).total_seconds() < max_age


class MirrorSync:
    def __init__(
        self,
        store: Store,
        marketo: MarketoService,
        *,
        load_from: datetime,
        export_poll_seconds: float,
        lease_seconds: float,
        owner: str | None = None,
        now: Callable[[], datetime] = utcnow,
        stop: threading.Event | None = None,
        opt_out_writeback: bool = False,
    ):
        self.store = store
        self.marketo = marketo
        self.load_from = load_from
        self.export_poll_seconds = export_poll_seconds
        self.lease_seconds = lease_seconds
        self.owner = owner or f"worker-{uuid.uuid4().hex[:12]}"
        self.now = now
        self.stop = stop or threading.Event()
        self.opt_out_writeback = opt_out_writeback  # unsubscribes also go to Salesforce's outbox

    def run_once(self) -> SyncReport:
        if not self.store.sync.acquire_lease(self.owner, self.lease_seconds):
            return SyncReport(ran=False)
        report = SyncReport(ran=True)
        started = self.now()
        try:
            self.store.sync.update(self.owner, last_attempt_at=started)
            status = self.store.sync.status()
            if status.load_status != "complete":
                self._load(status, report)
            self._follow_changes(report)
            self.store.sync.update(self.owner, last_success_at=started, last_error=None)
        except MarketoError as error:
            report.error = f"Marketo: {error.message}"
            self._note_failure(report.error)
        except SyncStopped:
            report.error = "stopped"
        except LeaseLost as error:
            report.error = str(error)
        finally:
            self.store.sync.release_lease(self.owner)
        if report.error and report.error != "stopped":
            log.warning("mirror sync failed: %s", report.error)
        return report

    def _note_failure(self, message: str) -> None:
        try:
            self.store.sync.update(self.owner, last_error=message[:2000])
        except LeaseLost:
            pass

    # full load ------------------------------------------------------------
    def _load(self, status: SyncStatus, report: SyncReport) -> None:
        if status.load_status == "not_started":
            started = self.now()
            token = self.marketo.paging_token(started - LOAD_OVERLAP)
            self.store.sync.update(
                self.owner, load_status="loading", load_started_at=started, load_window_start=self.load_from,
                load_export_id=None, changes_token=token,
            )
            status = self.store.sync.status()
        window_start, export_id = status.load_window_start, status.load_export_id
        while window_start < status.load_started_at:
            window_end = min(window_start + WINDOW, status.load_started_at)
            export_id = export_id or self._start_export(window_start, window_end)
            rows = self._finished_export_rows(export_id)
            unsubscribed = [
                email for row in rows if is_marketo_true(row.get("unsubscribed")) and (email := marketo_email(row.get("email")))
            ]
            self._apply_changes(unsubscribed=unsubscribed,
                                state={"load_window_start": window_end, "load_export_id": None})
            report.loaded_windows += 1
            report.unsubscribed += len(unsubscribed)
            window_start, export_id = window_end, None
        self.store.sync.update(self.owner, load_status="complete", load_finished_at=self.now())

    def _start_export(self, start: datetime, end: datetime) -> str:
        export_id = self.marketo.create_lead_export(EXPORT_FIELDS, start, end)
        self.store.sync.update(self.owner, load_export_id=export_id)
        return export_id

    def _finished_export_rows(self, export_id: str) -> list[dict]:
        while True:
            status = self.marketo.lead_export_status(export_id).get("status")
            if status == "Completed":
                return list(self.marketo.lead_export_rows(export_id))
            if status == "Created":
                self.marketo.enqueue_lead_export(export_id)
            elif status in ("Failed", "Canceled", None):
                # Forget the job so the next run starts this window again with a new one.
                self.store.sync.update(self.owner, load_export_id=None)
                raise MarketoUnavailable(f"Marketo's lead export ended {status or 'without a status'}")
            # Marketo asks that a job's status be polled at most once a minute.
            if self.stop.wait(self.export_poll_seconds):
                raise SyncStopped()
            self.store.sync.renew_lease(self.owner, self.lease_seconds)

    # change stream ----------------------------------------------------------
    def _follow_changes(self, report: SyncReport) -> None:
        token = self.store.sync.status().changes_token
        if token is None:
            token = self.marketo.paging_token(self.now() - LOAD_OVERLAP)
        while True:
            page = self.marketo.lead_changes_page(token, WATCHED_FIELDS)
            lead_ids = [a["leadId"] for a in page.activities if isinstance(a.get("leadId"), int)]
            unsubscribed, subscribed = self._current_state(lead_ids)
            self._apply_changes(unsubscribed=unsubscribed, subscribed=subscribed,
                                state={"changes_token": page.next_page_token, "lease_until": self._lease_end()})
            report.change_pages += 1
            report.unsubscribed += len(unsubscribed)
            report.subscribed += len(subscribed)
            token = page.next_page_token
            if not page.more_result:
                return

    def _current_state(self, lead_ids: Iterable[int]) -> tuple[list[str], list[str]]:
        """Which of these leads' addresses are unsubscribed now, over every lead with that address."""
        lead_ids = list(dict.fromkeys(lead_ids))
        if not lead_ids:
            return [], []
        leads = self.marketo.leads_by_id(lead_ids, fields=("id", "email"))
        emails = list(dict.fromkeys(email for lead in leads if (email := marketo_email(lead.get("email")))))
        if not emails:
            return [], []
        result = self.marketo.lookup_emails(emails, timeout=LOOKUP_TIMEOUT, kind="sync")
        if result.failed:
            raise next(iter(result.failed.values()))
        unsubscribed = [email for email, flag in result.unsubscribed.items() if flag]
        subscribed = [email for email, flag in result.unsubscribed.items() if not flag] + sorted(result.not_found)
        return unsubscribed, subscribed

    def _apply_changes(self, *, unsubscribed: list[str], subscribed: list[str] = (), state: dict) -> None:
        """With the opt-out write-back on, the unsubscribes owed to Salesforce land in the mirror's transaction."""
        if not (self.opt_out_writeback and unsubscribed):
            self.store.mirror.apply_changes(self.owner, unsubscribed=unsubscribed, subscribed=subscribed, state=state)
            return
        with self.store.transaction() as session:
            self.store.mirror.apply_changes(self.owner, unsubscribed=unsubscribed, subscribed=subscribed, state=state,
                                            session=session)
            self.store.outbox.add_opt_outs(unsubscribed, session=session)

    def _lease_end(self) -> datetime:
        return utcnow() + timedelta(seconds=self.lease_seconds)

