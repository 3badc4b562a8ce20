"""Keeps the gate's mirror of Marketo's unsubscribed addresses: a full load, then Marketo's change stream.

- The full load (gateway/mirror_load.py) exports the admin's list of unsubscribed leads in one Bulk Lead
  Extract job; without one, it reads every lead by id up to the newest (when that costs fewer calls), or
  walks 31-day `createdAt` windows with several jobs queued at once. Its plan (each job and how far it got)
  is saved after each step, so a worker that dies resumes where it stopped.
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

from gateway.addresses import address_key
from gateway.events import emit
from gateway.marketo import MarketoError
from gateway.marketo.interfaces import MarketoService
from gateway.mirror_load import (
    EXPORT_FIELDS,
    WALK_CALLS_PER_SECOND,
    WINDOW,
    FullLoad,
    SyncStopped,
)
from gateway.store import LeaseLost, Store, SyncStatus, utcnow

log = logging.getLogger(__name__)

__all__ = ["EXPORT_FIELDS", "WINDOW", "MirrorSync", "SyncReport", "SyncStopped", "is_mirror_fresh"]

WATCHED_FIELDS = ("unsubscribed",)
# The change stream starts this long before the load so that nothing that happens during it is missed.
LOAD_OVERLAP = timedelta(minutes=10)
LOOKUP_TIMEOUT = 30.0


@dataclass
class SyncReport:
    ran: bool  # False when another worker held the lease
    loaded_windows: int = 0
    change_pages: int = 0
    unsubscribed: int = 0
    subscribed: int = 0
    error: str | None = None


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
        export_jobs: int = 10,
        smart_list: str | None = None,
        static_list: str | None = None,
        keep_lease: bool = False,
        opt_out_writeback: bool = False,
        load_mode: str = "auto",
        calls_left: Callable[[], int | None] = lambda: None,
        walk_calls_per_second: float = WALK_CALLS_PER_SECOND,
    ):
        self.store = store
        self.marketo = marketo
        self.load_from = load_from
        self.export_poll_seconds = export_poll_seconds
        self.lease_seconds = lease_seconds
        self.owner = owner or f"worker-{uuid.uuid4().hex[:12]}"
        self.now = now
        self.stop = stop or threading.Event()
        list_kind, list_ref = ("smartList", smart_list) if smart_list else ("staticList", static_list)
        self.full_load = FullLoad(
            store, marketo, owner=self.owner, now=now, stop=self.stop, poll_seconds=export_poll_seconds,
            lease_seconds=lease_seconds, max_jobs=export_jobs, email_of=address_key, apply=self._apply_changes,
            list_kind=list_kind if list_ref else None, list_ref=list_ref, mode=load_mode, calls_left=calls_left,
            walk_calls_per_second=walk_calls_per_second,
        )
        # A worker keeps the lease between runs (it renews it; see gateway/lease.py); a one-off run hands it back.
        self.keep_lease = keep_lease
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
                started = self.now()  # the mirror is as fresh as the change stream read after the load
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
            if not self.keep_lease:
                self.store.sync.release_lease(self.owner)
        if report.error and report.error != "stopped":
            emit("mirror.sync_failed", logging.WARNING, owner=self.owner, error=report.error)
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
            plan, source = self.full_load.plan_for(self.load_from, started)
            self.store.sync.update(
                self.owner, load_status="loading", load_started_at=started,
                load_window_start=self.load_from if plan and "start" in plan[0] else None,
                load_export_id=None, load_plan=plan, load_source=source, changes_token=token,
            )
            status = self.store.sync.status()
        self.full_load.run(status, report)

    # change stream ----------------------------------------------------------
    def _follow_changes(self, report: SyncReport) -> None:
        token = self.store.sync.status().changes_token
        if token is None:
            token = self.marketo.paging_token(self.now() - LOAD_OVERLAP)
        while True:
            page = self.marketo.lead_changes_page(token, WATCHED_FIELDS)
            lead_ids = [a["leadId"] for a in page.activities if isinstance(a.get("leadId"), int)]
            looked_up_at = utcnow()  # a push after this is newer than Marketo's answer below
            unsubscribed, subscribed = self._current_state(lead_ids)
            self._apply_changes(unsubscribed=unsubscribed, subscribed=subscribed,
                                state={"changes_token": page.next_page_token, "lease_until": self._lease_end()},
                                looked_up_at=looked_up_at)
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
        emails = list(dict.fromkeys(email for lead in leads if (email := address_key(lead.get("email")))))
        if not emails:
            return [], []
        result = self.marketo.lookup_emails(emails, timeout=LOOKUP_TIMEOUT, kind="sync")
        if result.failed:
            raise next(iter(result.failed.values()))
        unsubscribed = [email for email, flag in result.unsubscribed.items() if flag]
        subscribed = [email for email, flag in result.unsubscribed.items() if not flag] + sorted(result.not_found)
        return unsubscribed, subscribed

    def _apply_changes(self, *, unsubscribed: list[str], subscribed: list[str] = (), state: dict,
                       looked_up_at: datetime | None = None) -> None:
        """With the opt-out write-back on, the unsubscribes owed to Salesforce land in the mirror's transaction."""
        if not (self.opt_out_writeback and unsubscribed):
            self.store.mirror.apply_changes(self.owner, unsubscribed=unsubscribed, subscribed=subscribed, state=state,
                                            looked_up_at=looked_up_at)
            return
        with self.store.transaction() as session:
            self.store.mirror.apply_changes(self.owner, unsubscribed=unsubscribed, subscribed=subscribed, state=state,
                                            looked_up_at=looked_up_at, session=session)
            self.store.outbox.add_opt_outs(unsubscribed, session=session)

    def _lease_end(self) -> datetime:
        return utcnow() + timedelta(seconds=self.lease_seconds)

