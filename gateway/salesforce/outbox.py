"""Draining the Salesforce outbox: blocked sends become Tasks, learnt unsubscribes become HasOptedOutOfEmail.

Exactly once, per Task row. A drain claims up to 200 rows (`sending`, a fresh attempt id, a claim end),
finds their Contacts and Leads, writes each row's WhoId down, then creates the Tasks in one composite call
and records each answer. Every Task carries the row's marker in its Description. If the drain dies (or loses
the answer) between Salesforce creating the Tasks and the gate recording it, the rows stay `sending` past
their claim; the next drain takes them over and first asks Salesforce for Tasks on those WhoIds created since
the claim began, reading the markers: a row whose Task exists is marked sent with it, only the others are
sent again. A row is re-sent only when its Task is known not to exist: after a 503 or REQUEST_LIMIT_EXCEEDED
(Salesforce did nothing), a refused connection, or a reconciliation that did not find it.

Opt-outs need no such care: setting HasOptedOutOfEmail to true twice is harmless; it is never set to false.

Temporary failures (503, network, REQUEST_LIMIT_EXCEEDED) back off: 5 s doubling to a minute, so a delivery
held up by an outage goes out within a minute or two of Salesforce answering again (the worker's interval).
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from gateway.events import emit
from gateway.salesforce.errors import SalesforceError
from gateway.salesforce.interfaces import MAX_RECORDS_PER_CALL, SalesforceService
from gateway.salesforce.records import batches, not_opted_out, who_ids_by_email
from gateway.salesforce.soql import datetime_literal, in_list
from gateway.salesforce.tasks import MARKER_LABEL, task_record
from gateway.store import OutboxEntry, Store, utcnow
from gateway.store.outbox import OPT_OUT, TASK

log = logging.getLogger(__name__)

MARKER = re.compile(re.escape(MARKER_LABEL) + r"\s*([0-9a-f]{32})")
CLOCK_MARGIN = timedelta(minutes=10)  # between the gate's clock and Salesforce's CreatedDate


@dataclass
class DrainReport:
    tasks_created: int = 0
    skipped: int = 0
    failed: int = 0
    reconciled: int = 0  # Tasks found already created for rows a dead drain left behind
    opted_out: int = 0
    error: str | None = None
    waited: bool = False  # backing off after a temporary failure: nothing was tried
    calls: dict[str, int] = field(default_factory=dict)


class OutboxDrain:
    def __init__(self, store: Store, salesforce: SalesforceService, *, claim_seconds: float = 300.0,
                 request_timeout: float = 20.0, backoff_base: float = 5.0, backoff_cap: float = 60.0,
                 max_seconds: float = 120.0, batch_size: int = MAX_RECORDS_PER_CALL):
        self.store = store
        self.salesforce = salesforce
        self.claim_seconds = claim_seconds
        self.request_timeout = min(request_timeout, claim_seconds / 3)  # a call ends well inside its claim
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_seconds = max_seconds
        self.batch_size = min(batch_size, MAX_RECORDS_PER_CALL)
        self._attempt: str | None = None
        self._reconciling = False  # the rows held may have Tasks already: never put them back to pending on a failure

    def run(self) -> DrainReport:
        report = DrainReport()
        state = self.store.salesforce.status()
        if state.retry_at is not None and utcnow() < state.retry_at:
            report.waited = True
            return report
        began = time.monotonic()
        worked = False
        try:
            worked |= self._reconcile(report)
            for kind, step in ((TASK, self._send_tasks), (OPT_OUT, self._write_opt_outs)):
                while time.monotonic() - began < self.max_seconds:
                    rows = self._claim(kind)
                    if not rows:
                        break
                    worked = True
                    step(rows, report)
                    self._attempt = None
        except SalesforceError as error:
            report.error = str(error)
            self._give_back(error)
            failures = state.failures + 1
            delay = min(self.backoff_cap, self.backoff_base * 2 ** (failures - 1))
            self.store.salesforce.record_failure(str(error), retry_at=utcnow() + timedelta(seconds=delay),
                                                 failures=failures)
            log.warning("Salesforce outbox: %s; trying again in %.0f s", error, delay)
            return report
        if worked:
            self.store.salesforce.record_success()
        return report

    # --- claims ---------------------------------------------------------------------------------
    def _until(self):
        return utcnow() + timedelta(seconds=self.claim_seconds)

    def _claim(self, kind: str) -> list[OutboxEntry]:
        self._attempt = uuid.uuid4().hex
        return self.store.outbox.claim(kind, self.batch_size, self._attempt, self._until())

    def _give_back(self, error: SalesforceError) -> None:
        """After a failed call: rows Salesforce surely did not act on go back to pending; others wait to be reconciled."""
        if self._attempt is None:
            return
        if self._reconciling or getattr(error, "maybe_processed", False):
            # The answer was lost, not refused: the claim ends now and the next drain reconciles these rows.
            self.store.outbox.extend(self._attempt, utcnow() - timedelta(seconds=1))
        else:
            self.store.outbox.release(self._attempt)
        self._attempt = None

    # --- Tasks ----------------------------------------------------------------------------------
    def _send_tasks(self, rows: list[OutboxEntry], report: DrainReport) -> None:
        attempt = self._attempt
        unknown = [row for row in rows if row.who_id is None]
        who = who_ids_by_email(self.salesforce, [row.recipient for row in unknown], timeout=self.request_timeout)
        found = {row.id: who[row.recipient.lower()] for row in unknown if row.recipient.lower() in who}
        skipped = [row.id for row in unknown if row.id not in found]
        self.store.outbox.set_who(attempt, found)  # before the Tasks exist: reconciliation looks under these
        self.store.outbox.finish(attempt, skipped=skipped)
        report.skipped += len(skipped)
        sending = [(row, row.who_id or found[row.id]) for row in rows if row.who_id or row.id in found]
        if not sending:
            return
        self.store.outbox.extend(attempt, self._until())
        results = self.salesforce.create([task_record(row, who_id) for row, who_id in sending],
                                         timeout=self.request_timeout)
        sent = {row.id: result.id for (row, _), result in zip(sending, results) if result.success}
        failed = {row.id: result.message or "rejected" for (row, _), result in zip(sending, results)
                  if not result.success}
        self.store.outbox.finish(attempt, sent=sent, failed=failed)
        report.tasks_created += len(sent)
        report.failed += len(failed)
        if sent:
            emit("salesforce.delivered", tasks=len(sent), refused=len(failed))
        for row_id, message in failed.items():
            log.warning("Salesforce refused the Task of outbox entry %d: %s", row_id, message)

    def _reconcile(self, report: DrainReport) -> bool:
        """Rows a dead drain left `sending`: mark those whose Task exists, put the rest back to pending."""
        worked = False
        while True:
            stale = self.store.outbox.expired_claims(TASK, self.batch_size)
            if not stale:
                return worked
            worked = True
            since = min(row.claimed_at or row.created_at for row in stale) - CLOCK_MARGIN
            self._attempt = uuid.uuid4().hex
            self._reconciling = True
            rows = self.store.outbox.take_over([row.id for row in stale], self._attempt, self._until())
            markers = {row.marker: row.id for row in rows}
            created: dict[int, str] = {}
            who_ids = sorted({row.who_id for row in rows if row.who_id})
            for batch in batches(who_ids):
                tasks = self.salesforce.query(
                    f"SELECT Id, Description FROM Task WHERE WhoId IN {in_list(batch)} "
                    f"AND CreatedDate >= {datetime_literal(since)}", timeout=self.request_timeout)
                for task in tasks:
                    for marker in MARKER.findall(task.get("Description") or ""):
                        if marker in markers:
                            created.setdefault(markers[marker], task["Id"])
            self.store.outbox.finish(self._attempt, sent=created)
            self.store.outbox.release(self._attempt)
            report.reconciled += len(created)
            report.tasks_created += len(created)
            self._attempt = None
            self._reconciling = False

    # --- opt-outs -------------------------------------------------------------------------------
    def _write_opt_outs(self, rows: list[OutboxEntry], report: DrainReport) -> None:
        attempt = self._attempt
        targets = not_opted_out(self.salesforce, [row.recipient for row in rows], timeout=self.request_timeout)
        errors: dict[str, str] = {}
        for start in range(0, len(targets), MAX_RECORDS_PER_CALL):
            chunk = targets[start:start + MAX_RECORDS_PER_CALL]
            results = self.salesforce.update(
                [{"attributes": {"type": sobject}, "Id": record_id, "HasOptedOutOfEmail": True}
                 for sobject, record_id, _email in chunk], timeout=self.request_timeout)
            for (_sobject, _record_id, email), result in zip(chunk, results):
                if result.success:
                    report.opted_out += 1
                else:
                    errors.setdefault(email, result.message or "rejected")
        failed = {row.id: errors[row.recipient.lower()] for row in rows if row.recipient.lower() in errors}
        sent = {row.id: None for row in rows if row.id not in failed}
        self.store.outbox.finish(attempt, sent=sent, failed=failed)
        report.failed += len(failed)


def drain_outbox(gate, **options) -> DrainReport | None:
    """The worker's step: drain what Salesforce is owed. Never raises; a failure is logged and waits for the next round."""
    if not gate.config.salesforce_configured:
        return None
    try:
        return OutboxDrain(gate.store, gate.salesforce, **options).run()
    except Exception as error:  # the worker's loop must go on; the database or Salesforce may be back next round
        log.error("Salesforce outbox drain failed: %s", type(error).__name__)
        return None
