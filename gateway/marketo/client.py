"""Client of Marketo Engage's REST API: which of these emails has unsubscribed?

It knows Marketo's protocol (access token, leads by email or id, the activity stream,
Bulk Lead Extract, error codes, limits) and nothing of the gate's decisions. The facts it
relies on are in docs/marketo.md.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime
from typing import Iterable, Iterator, Sequence

from gateway.marketo.errors import (
    MarketoCircuitOpen,
    MarketoConfigError,
    MarketoError,
    MarketoQuotaExceeded,
    MarketoRequestError,
    MarketoUnavailable,
)
from gateway.marketo.interfaces import ActivityPage, LookupResult
from gateway.marketo.wire import (
    _SYNC,
    MAX_BATCH_SIZE,
    PROBE_EMAIL,
    _BatchAnswer,
    _BatchTooBig,
    _Deadline,
    _HANG_GRACE,
    _LEADS_PATH,
    _LEAD_CHANGES_PATH,
    _LEAD_EXPORT_PATH,
    _LIST_BY_NAME_PATHS,
    _LOOKUP,
    _PAGING_TOKEN_PATH,
    _batches_of_spellings,
    _export_path,
    _first_result,
    _is_integer,
    _iso_utc,
    _leads_params,
    _next_page_token,
    _result_page,
    _spellings,
    _string_field,
    _unsubscribed_flags,
)
from gateway.marketo.transport import MarketoTransport


class MarketoClient(MarketoTransport):
    """Talks to Marketo within deadlines, sharing one token and one session: the real MarketoService.

    Every request goes through `_request` (one request with its retries); `on_call(kind)` is
    told of each request before it is sent ("token", "lookup" or "sync") and may veto it by
    raising a MarketoError, which then propagates unretried. `on_outcome(kind, error)` is told how each
    request ended, after its retries: `error` is None for an answer, else the MarketoError it raised.
    """

    def lookup_emails(self, emails: Iterable[str], *, timeout: float, kind: str = _LOOKUP) -> LookupResult:
        """Whether each address has unsubscribed in Marketo, answered within `timeout` seconds.

        `emails` are address keys (gateway.addresses.address_key). Marketo does not normalize the addresses
        it holds, so each key is asked in every spelling Marketo may hold (`marketo_spellings`), all in the
        same batch, and answered under the key: unsubscribed if any lead with any of its spellings is.
        `kind` is what the requests count as: "lookup", or "sync" when the mirror asks.
        """
        if kind not in (_LOOKUP, _SYNC):
            raise ValueError(f"lookup_emails counts its requests as {_LOOKUP!r} or {_SYNC!r}")
        deadline = _Deadline(self._clock, timeout)
        wanted = list(dict.fromkeys(emails))
        if not wanted:
            return LookupResult(unsubscribed={}, not_found=frozenset(), failed={})
        try:
            self._raise_if_quota_exhausted()
            if self.breaker is not None and self.breaker.refuses():
                raise MarketoCircuitOpen("Marketo keeps failing; not called until a probe succeeds")
        except (MarketoQuotaExceeded, MarketoCircuitOpen) as error:
            return LookupResult(unsubscribed={}, not_found=frozenset(), failed=dict.fromkeys(wanted, error))
        batches = _batches_of_spellings(wanted)
        answer = self._answer_batches(kind, batches, deadline)
        answered = answer.unsubscribed.keys() | answer.failed.keys()
        return LookupResult(
            unsubscribed=answer.unsubscribed,
            not_found=frozenset(email for email in wanted if email not in answered),
            failed=answer.failed,
        )

    def check_connection(self, *, timeout: float) -> None:
        """Raise the MarketoError that stops the gate from using Marketo, if any.

        Getting a token proves the credentials; looking up a probe address proves the
        API user may read leads.
        """
        deadline = _Deadline(self._clock, timeout)
        self._raise_if_quota_exhausted()
        self._request_leads(_LOOKUP, _leads_params([PROBE_EMAIL]), deadline)

    # --- public interface: incremental sync from the activity stream -----------------------
    # Each method raises the MarketoError that stopped it; `timeout` bounds the whole call.

    def paging_token(self, since: datetime, *, timeout: float = 30.0) -> str:
        """A page token for the activities since `since` (a naive datetime is taken as UTC)."""
        body = self._request(
            _SYNC,
            "GET",
            _PAGING_TOKEN_PATH,
            _Deadline(self._clock, timeout),
            params={"sinceDatetime": _iso_utc(since)},
        )
        return _next_page_token(body)

    def lead_changes_page(self, page_token: str, fields: Sequence[str], *, timeout: float = 30.0) -> ActivityPage:
        """One page (≤ 300) of the changes to these lead fields (and new leads), from `page_token` on."""
        if not fields or isinstance(fields, str):
            raise ValueError("lead_changes_page takes a non-empty sequence of field names")
        return self._activity_page(_LEAD_CHANGES_PATH, page_token, {"fields": ",".join(fields)}, timeout)

    def leads_by_id(
        self,
        lead_ids: Iterable[int],
        *,
        fields: Sequence[str] = ("id", "email", "unsubscribed"),
        timeout: float = 30.0,
    ) -> list[dict]:
        """Every lead with one of these ids, with these fields; all or nothing (raises if any batch fails)."""
        if not fields or isinstance(fields, str):
            raise ValueError("leads_by_id takes a non-empty sequence of field names")
        deadline = _Deadline(self._clock, timeout)
        wanted = list(dict.fromkeys(lead_ids))
        if not all(_is_integer(lead_id) for lead_id in wanted):
            raise ValueError("leads_by_id takes integer lead ids")
        leads: list[dict] = []
        for start in range(0, len(wanted), MAX_BATCH_SIZE):
            params = {
                "filterType": "id",
                "filterValues": ",".join(map(str, wanted[start:start + MAX_BATCH_SIZE])),
                "fields": ",".join(fields),
                "batchSize": str(MAX_BATCH_SIZE),
            }
            leads.extend(self._all_lead_pages(_SYNC, params, deadline))
        return leads

    # --- public interface: full load through Bulk Lead Extract ------------------------------

    def create_lead_export(
        self, fields: Sequence[str], created_from: datetime, created_to: datetime, *, timeout: float = 30.0
    ) -> str:
        """Create (not yet enqueue) a CSV export of the leads created in [created_from, created_to]; its id."""
        if not fields or isinstance(fields, str):
            raise ValueError("create_lead_export takes a non-empty sequence of field names")
        job = {
            "fields": list(fields),
            "format": "CSV",
            "filter": {"createdAt": {"startAt": _iso_utc(created_from), "endAt": _iso_utc(created_to)}},
        }
        body = self._request(
            _SYNC, "POST", f"{_LEAD_EXPORT_PATH}/create.json", _Deadline(self._clock, timeout), json_body=job
        )
        return _string_field(_first_result(body, "export job"), "exportId", "export job")

    def create_list_export(self, fields: Sequence[str], list_kind: str, list_id: int, *, timeout: float = 30.0) -> str:
        """Create (not yet enqueue) a CSV export of the members of a smart list or static list
        (`list_kind` "smartList" or "staticList"); its id. Not every subscription has the smart list filter (1035)."""
        if not fields or isinstance(fields, str):
            raise ValueError("create_list_export takes a non-empty sequence of field names")
        if list_kind not in _LIST_BY_NAME_PATHS or not _is_integer(list_id):
            raise ValueError("create_list_export takes a list kind (smartList, staticList) and an integer id")
        job = {"fields": list(fields), "format": "CSV", "filter": {f"{list_kind}Id": list_id}}
        body = self._request(
            _SYNC, "POST", f"{_LEAD_EXPORT_PATH}/create.json", _Deadline(self._clock, timeout), json_body=job
        )
        return _string_field(_first_result(body, "export job"), "exportId", "export job")

    def list_id_by_name(self, list_kind: str, name: str, *, timeout: float = 30.0) -> int:
        """The id of the smart list or static list named `name` (asset API); MarketoConfigError when there is none."""
        if list_kind not in _LIST_BY_NAME_PATHS:
            raise ValueError("list_id_by_name takes a list kind: smartList or staticList")
        body = self._request(
            _SYNC, "GET", _LIST_BY_NAME_PATHS[list_kind], _Deadline(self._clock, timeout), params={"name": name}
        )
        found = [item for item in _result_page(body) if _is_integer(item.get("id"))]
        if not found:
            raise MarketoConfigError(f"Marketo has no {list_kind} named {name!r}")
        return int(found[0]["id"])

    def enqueue_lead_export(self, export_id: str, *, timeout: float = 30.0) -> str:
        """Queue a created export for processing; its status ("Queued")."""
        body = self._request(_SYNC, "POST", _export_path(export_id, "enqueue"), _Deadline(self._clock, timeout))
        return _string_field(_first_result(body, "export job"), "status", "export job")

    def lead_export_status(self, export_id: str, *, timeout: float = 30.0) -> dict:
        """The export job: status (Created, Queued, Processing, Completed, Failed, Canceled),
        numberOfRecords, fileSize, ... Marketo asks for at most one poll a minute."""
        body = self._request(_SYNC, "GET", _export_path(export_id, "status"), _Deadline(self._clock, timeout))
        job = _first_result(body, "export job")
        _string_field(job, "status", "export job")
        return job

    def lead_export_rows(self, export_id: str, *, timeout: float = 120.0) -> Iterator[dict[str, str]]:
        """The rows of a completed export's CSV file (column name -> text, "" when empty), streamed.

        The request (with its retries) is made by this call, so that Marketo refusing it raises
        here; the rows are then read from the network as they are iterated. The deadline bounds
        the whole download, the caller's time between rows included: size it by fileSize. A
        failure while iterating raises MarketoUnavailable (network, deadline) or
        MarketoRequestError (a malformed file); the export can be downloaded again.
        """
        deadline = _Deadline(self._clock, timeout)
        return self._request(
            _SYNC,
            "GET",
            _export_path(export_id, "file"),
            deadline,
            stream=True,
            read=lambda response, token: self._read_export_file(response, token, deadline),
        )

    # --- batches ----------------------------------------------------------------------

    def _answer_batches(self, kind: str, batches: list[list[str]], deadline: _Deadline) -> _BatchAnswer:
        pool = ThreadPoolExecutor(
            max_workers=min(self._max_concurrency, len(batches)), thread_name_prefix="marketo-lookup"
        )
        try:
            futures = [pool.submit(self._answer_batch, kind, batch, deadline) for batch in batches]
            # Requests' timeout bounds each socket read, not a whole answer; this bounds the call.
            wait(futures, timeout=max(deadline.remaining(), 0.0) + _HANG_GRACE)
            too_late = MarketoUnavailable("Marketo did not answer before the deadline")
            answer = _BatchAnswer()
            for batch, future in zip(batches, futures):
                answer.add(future.result() if future.done() else _BatchAnswer.all_failed(batch, too_late))
            return answer
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _answer_batch(self, kind: str, emails: list[str], deadline: _Deadline) -> _BatchAnswer:
        try:
            spellings = [spelling for email in emails for spelling in _spellings(email)]
            leads = self._all_lead_pages(kind, _leads_params(spellings), deadline)
        except _BatchTooBig as too_big:
            if len(emails) == 1:
                return _BatchAnswer.all_failed(emails, too_big)
            middle = len(emails) // 2
            return self._answer_batch(kind, emails[:middle], deadline).add(
                self._answer_batch(kind, emails[middle:], deadline)
            )
        except MarketoError as error:
            return _BatchAnswer.all_failed(emails, error)
        return _BatchAnswer(unsubscribed=_unsubscribed_flags(emails, leads))

    def _all_lead_pages(self, kind: str, params: dict[str, str], deadline: _Deadline) -> list[dict]:
        """Every lead leads.json answers to these parameters, following Marketo's paging."""
        leads: list[dict] = []
        page_token = None
        while True:
            page_params = dict(params, nextPageToken=page_token) if page_token else params
            body = self._request_leads(kind, page_params, deadline)
            page = _result_page(body)
            leads.extend(page)
            next_token = body.get("nextPageToken")
            if not next_token or not (page or body.get("moreResult") is True):
                return leads
            if next_token == page_token:
                raise MarketoRequestError("Marketo sent the same nextPageToken twice")
            page_token = next_token

    def _request_leads(self, kind: str, params: dict[str, str], deadline: _Deadline) -> dict:
        return self._request(kind, "GET", _LEADS_PATH, deadline, params=params, form_fallback=True)

    # --- activity pages -------------------------------------------------------------------

    def _activity_page(self, path: str, page_token: str, filters: dict[str, str], timeout: float) -> ActivityPage:
        if not isinstance(page_token, str) or not page_token:
            raise ValueError("a page token is a non-empty string")
        params = {"nextPageToken": page_token, **filters, "batchSize": str(MAX_BATCH_SIZE)}
        body = self._request(_SYNC, "GET", path, _Deadline(self._clock, timeout), params=params)
        return ActivityPage(
            activities=tuple(_result_page(body)),
            next_page_token=_next_page_token(body),
            more_result=body.get("moreResult") is True,
        )

    # --- one REST request, with its retries ----------------------------------------------------

