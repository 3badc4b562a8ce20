"""Client of Marketo Engage's REST API: which of these emails has unsubscribed?

It knows Marketo's protocol (access token, leads by email or id, the activity stream,
Bulk Lead Extract, error codes, limits) and nothing of the gate's decisions. The facts it
relies on are in docs/marketo.md.
"""
import collections
import csv
import io
import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator, Sequence
from urllib.parse import quote

import requests

from gateway.addresses import address_key, marketo_spellings
from gateway.marketo.breaker import CircuitBreaker
from gateway.marketo.errors import (
    MarketoAuthError,
    MarketoCircuitOpen,
    MarketoConfigError,
    MarketoError,
    MarketoQuotaExceeded,
    MarketoRequestError,
    MarketoUnavailable,
)
from gateway.marketo.interfaces import ActivityPage, LookupResult
from gateway.marketo.quota import next_quota_reset

logger = logging.getLogger(__name__)

PROBE_EMAIL = "connection-test@gateway.invalid"
MAX_BATCH_SIZE = 300
MAX_URL_LENGTH = 8000

_IDENTITY_PATH = "/identity/oauth/token"
_LEADS_PATH = "/rest/v1/leads.json"
_PAGING_TOKEN_PATH = "/rest/v1/activities/pagingtoken.json"
_LEAD_CHANGES_PATH = "/rest/v1/activities/leadchanges.json"
_LEAD_EXPORT_PATH = "/bulk/v1/leads/export"
_LIST_BY_NAME_PATHS = {"smartList": "/rest/asset/v1/smartList/byName.json",
                       "staticList": "/rest/asset/v1/staticList/byName.json"}
_LEAD_FIELDS = "email,unsubscribed"
_LOOKUP, _TOKEN, _SYNC = "lookup", "token", "sync"  # the kinds of call counted and passed to on_call
_TOKEN_RENEWAL_MARGIN = 60.0  # seconds; a token renewed this early never expires in flight
_FIRST_BACK_OFF = 0.1
_MAX_BACK_OFF = 2.0
_BACK_OFF_JITTER = 0.1  # up to +10 %, so batches that failed together do not retry in lockstep
_HANG_GRACE = 0.5  # seconds past the deadline to wait for a request that ignores its timeout
_FILE_CHUNK = 64 * 1024  # bytes read at a time from an export file

_TOKEN_REJECTED_CODES = frozenset({"601", "602"})
_TRANSIENT_CODES = frozenset({"604", "606", "608", "611", "615", "713"})
_QUOTA_EXHAUSTED_CODE = "607"
_ACCESS_DENIED_CODE = "603"
_TOO_MANY_MATCHES_CODE = "1003"
# Bulk export queue or daily export quota full: it frees up in minutes or at the reset, not within
# one call's deadline, so it is reported as unavailable without being retried.
_EXPORT_QUEUE_FULL_CODE = "1029"


class _TokenRejected(MarketoAuthError):
    """601/602: the access token sent is invalid or expired."""

    def __init__(self, message: str, code: str, token: str):
        super().__init__(message, code)
        self.token = token


class _BatchTooBig(MarketoRequestError):
    """1003 or HTTP 413: Marketo wants fewer emails in one request."""


class _UriTooLong(MarketoRequestError):
    """HTTP 414: the request has to be sent as a form instead."""


class _Vetoed(Exception):
    """on_call refused a request. Not a MarketoError, so that no retry loop catches it on the way out."""

    def __init__(self, error: MarketoError):
        super().__init__(error.message)
        self.error = error


class _Deadline:
    def __init__(self, clock: Callable[[], float], seconds: float):
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        return self._end - self._clock()


@dataclass
class _BatchAnswer:
    unsubscribed: dict[str, bool] = field(default_factory=dict)
    failed: dict[str, MarketoError] = field(default_factory=dict)

    @classmethod
    def all_failed(cls, emails: Iterable[str], error: MarketoError) -> "_BatchAnswer":
        return cls(failed=dict.fromkeys(emails, error))

    def add(self, other: "_BatchAnswer") -> "_BatchAnswer":
        self.unsubscribed.update(other.unsubscribed)
        self.failed.update(other.failed)
        return self


class MarketoClient:
    """Talks to Marketo within deadlines, sharing one token and one session: the real MarketoService.

    Every request goes through `_request` (one request with its retries); `on_call(kind)` is
    told of each request before it is sent ("token", "lookup" or "sync") and may veto it by
    raising a MarketoError, which then propagates unretried. `on_outcome(kind, error)` is told how each
    request ended, after its retries: `error` is None for an answer, else the MarketoError it raised.
    """

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        request_timeout: float = 2.0,
        sync_request_timeout: float = 10.0,
        max_concurrency: int = 4,
        session: requests.Session | None = None,
        on_call: Callable[[str], None] | None = None,
        on_outcome: Callable[[str, MarketoError | None], None] | None = None,
        on_unanswered: Callable[[str], None] | None = None,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ):
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._base_url = base_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._request_timeout = request_timeout  # each token or lookup request, within the deadline
        self._sync_request_timeout = sync_request_timeout  # each sync request (slower endpoints), idem
        self._max_concurrency = max_concurrency
        self._session = session if session is not None else requests.Session()
        self._on_call = on_call
        self._on_outcome = on_outcome
        self._on_unanswered = on_unanswered  # told of each request that got no answer or a 5xx (not charged)
        self.breaker = breaker
        self._clock = clock
        self._sleep = sleep
        self._now = now
        self.calls: collections.Counter = collections.Counter()
        self.unanswered: collections.Counter = collections.Counter()  # of those, no answer or a 5xx
        self._lock = threading.Lock()  # guards calls, the cached token and the quota reset time
        self._token_fetch_lock = threading.Lock()  # one thread fetches a token, the others wait
        # Bounds REST requests in flight across concurrent calls (lookups and sync), not just within one.
        self._request_slots = threading.BoundedSemaphore(max_concurrency)
        self._cached_token: tuple[str, float] | None = None  # (token, clock() at which to renew)
        self._quota_reset_at: datetime | None = None

    # --- public interface: lookups ------------------------------------------------------

    @property
    def quota_exhausted_until(self) -> datetime | None:
        """After error 607: when Marketo's daily quota resets (aware, UTC); None once passed."""
        with self._lock:
            if self._quota_reset_at is not None and self._utc_now() >= self._quota_reset_at:
                self._quota_reset_at = None
            return self._quota_reset_at

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

    def _request(
        self,
        kind: str,
        method: str,
        path: str,
        deadline: _Deadline,
        *,
        params: dict[str, str] | None = None,
        json_body: dict | None = None,
        form_fallback: bool = False,
        stream: bool = False,
        read: Callable[[requests.Response, str], object] | None = None,
    ):
        """Send one request until it is answered: renew a rejected token once, back off on transient
        failures within the deadline, resend as a form when the URI is too long (if `form_fallback`).

        Returns what `read(response, token)` makes of the answer: by default the JSON envelope
        of a successful REST answer. Raises the MarketoError that stopped it.
        """
        url = self._base_url + path
        read = read if read is not None else self._read_rest_answer
        as_form = form_fallback and self._url_too_long(url, params)
        token_renewed = False
        attempt = 0
        try:
            while True:
                try:
                    answer = self._send_rest_request(kind, method, url, deadline, params, json_body, as_form, stream, read)
                    self._tell_outcome(kind, None)
                    return answer
                except _UriTooLong:
                    if as_form or not form_fallback:
                        raise
                    as_form = True
                except _TokenRejected as rejected:
                    if token_renewed:
                        raise MarketoAuthError(
                            f"Marketo rejected a newly issued access token (error {rejected.code})", rejected.code
                        ) from None
                    logger.warning("Marketo rejected the access token (error %s); fetching a new one", rejected.code)
                    self._forget_token(rejected.token)
                    token_renewed = True
                except MarketoUnavailable as error:
                    if error.code == _EXPORT_QUEUE_FULL_CODE:
                        raise
                    attempt += 1
                    self._back_off(kind, error, attempt, deadline)
        except _Vetoed as vetoed:
            self._tell_outcome(kind, vetoed.error)
            raise vetoed.error from None
        except MarketoError as error:
            self._tell_outcome(kind, error)
            raise

    def _tell_outcome(self, kind: str, error: MarketoError | None) -> None:
        if self._on_outcome is not None:
            self._on_outcome(kind, error)

    def _send_rest_request(
        self,
        kind: str,
        method: str,
        url: str,
        deadline: _Deadline,
        params: dict[str, str] | None,
        json_body: dict | None,
        as_form: bool,
        stream: bool,
        read: Callable[[requests.Response, str], object],
    ):
        self._raise_if_quota_exhausted()  # another batch may have hit 607 meanwhile
        token = self._token(deadline)
        options: dict = {"headers": {"Authorization": f"Bearer {token}"}}
        if as_form:
            method = "POST"
            options.update(params={"_method": "GET"}, data=params)
        else:
            options["params"] = params
            if json_body is not None:
                options["json"] = json_body
            if stream:
                options["stream"] = True
        with self._request_slot(deadline):  # a streamed answer frees its slot once its headers are in
            response = self._send(kind, method, url, deadline, **options)
        try:
            return read(response, token)
        except BaseException:
            response.close()
            raise

    def _read_rest_answer(self, response: requests.Response, token: str) -> dict:
        _raise_for_status(response)
        return self._successful(_json_object(response), token)

    def _successful(self, body: dict, token: str) -> dict:
        """The envelope if it reports success, else the MarketoError for its first error."""
        if body.get("success") is True:
            return body
        code, message = _first_error(body)
        raise self._error_for_code(code, message, token)

    def _error_for_code(self, code: str | None, message: str, token: str) -> MarketoError:
        described = f"Marketo error {code}: {message}"
        if code in _TOKEN_REJECTED_CODES:
            return _TokenRejected(described, code, token)
        if code in _TRANSIENT_CODES or code == _EXPORT_QUEUE_FULL_CODE:
            return MarketoUnavailable(described, code)
        if code == _QUOTA_EXHAUSTED_CODE:
            reset_at = self._mark_quota_exhausted()
            return MarketoQuotaExceeded(f"{described} (no calls until {reset_at.isoformat()})", code)
        if code == _ACCESS_DENIED_CODE:
            return MarketoConfigError(described, code)
        if code == _TOO_MANY_MATCHES_CODE:
            return _BatchTooBig(described, code)
        return MarketoRequestError(described, code)

    def _url_too_long(self, url: str, params: dict[str, str] | None) -> bool:
        return len(requests.Request("GET", url, params=params).prepare().url) > MAX_URL_LENGTH

    @contextmanager
    def _request_slot(self, deadline: _Deadline) -> Iterator[None]:
        if not self._request_slots.acquire(timeout=max(deadline.remaining(), 0.0)):
            raise MarketoUnavailable("Marketo deadline passed while waiting for a free request slot")
        try:
            yield
        finally:
            self._request_slots.release()

    # --- export file ------------------------------------------------------------------------

    def _read_export_file(self, response: requests.Response, token: str, deadline: _Deadline) -> Iterator[dict[str, str]]:
        """Check that the answer is a CSV file, not a JSON error envelope; its rows.

        Told apart by the first byte, not by Content-Type: a CSV header never starts with "{".
        """
        _raise_for_status(response)
        content = io.BufferedReader(_ResponseBytes(response, deadline), buffer_size=_FILE_CHUNK)
        if content.peek(1)[:1] == b"{":
            try:
                body = json.loads(content.read())
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise MarketoRequestError("Marketo answered the export file request with neither CSV nor a JSON object")
            self._successful(body, token)
            raise MarketoRequestError("Marketo answered the export file request with JSON, not CSV")
        return _csv_rows(content, response)

    # --- access token ---------------------------------------------------------------------

    def _token(self, deadline: _Deadline) -> str:
        token = self._valid_cached_token()
        if token is not None:
            return token
        if not self._token_fetch_lock.acquire(timeout=max(deadline.remaining(), 0.0)):
            raise MarketoUnavailable("Marketo deadline passed while waiting for an access token")
        try:
            return self._valid_cached_token() or self._fetch_token(deadline)
        finally:
            self._token_fetch_lock.release()

    def _valid_cached_token(self) -> str | None:
        with self._lock:
            if self._cached_token is not None and self._clock() < self._cached_token[1]:
                return self._cached_token[0]
            return None

    def _forget_token(self, token: str) -> None:
        with self._lock:
            # Another thread may already have replaced it with a good one.
            if self._cached_token is not None and self._cached_token[0] == token:
                self._cached_token = None

    def _fetch_token(self, deadline: _Deadline) -> str:
        attempt = 0
        while True:
            requested_at = self._clock()
            try:
                token, lifetime = self._request_token(deadline)
            except MarketoUnavailable as error:
                attempt += 1
                self._back_off(_TOKEN, error, attempt, deadline)
                continue
            with self._lock:
                self._cached_token = (token, requested_at + lifetime - _TOKEN_RENEWAL_MARGIN)
            return token

    def _request_token(self, deadline: _Deadline) -> tuple[str, float]:
        try:
            answer = self._request_token_once(deadline)
        except _Vetoed as vetoed:
            self._tell_outcome(_TOKEN, vetoed.error)
            raise
        except MarketoError as error:
            self._tell_outcome(_TOKEN, error)
            raise
        self._tell_outcome(_TOKEN, None)
        return answer

    def _request_token_once(self, deadline: _Deadline) -> tuple[str, float]:
        credentials = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
        }
        response = self._send(_TOKEN, "GET", self._base_url + _IDENTITY_PATH, deadline, params=credentials)
        status = response.status_code
        if status in (401, 403):
            raise MarketoAuthError(
                f"Marketo refused the client id / secret (HTTP {status}, {_oauth_error(response)})", str(status)
            )
        if status >= 500 or status == 429:
            raise MarketoUnavailable(f"Marketo identity answered HTTP {status}", str(status))
        if not 200 <= status < 300:
            raise MarketoRequestError(f"Marketo identity answered HTTP {status}", str(status))
        body = _json_object(response)
        token, lifetime = body.get("access_token"), body.get("expires_in")
        if not isinstance(token, str) or not token or not _is_number(lifetime):
            raise MarketoRequestError("Marketo identity answer has no usable access_token and expires_in")
        return token, float(lifetime)

    # --- daily quota ----------------------------------------------------------------------

    def _raise_if_quota_exhausted(self) -> None:
        reset_at = self.quota_exhausted_until
        if reset_at is not None:
            raise MarketoQuotaExceeded(
                f"Marketo's daily API quota is used up until {reset_at.isoformat()}", _QUOTA_EXHAUSTED_CODE
            )

    def _mark_quota_exhausted(self) -> datetime:
        reset_at = next_quota_reset(self._utc_now())
        with self._lock:
            self._quota_reset_at = reset_at
        logger.warning("Marketo's daily API quota is used up; no calls until %s", reset_at.isoformat())
        return reset_at

    def _utc_now(self) -> datetime:
        now = self._now()
        if now.tzinfo is None:
            now = now.replace(tzinfo=timezone.utc)
        return now.astimezone(timezone.utc)

    # --- HTTP -----------------------------------------------------------------------------

    def _send(self, kind: str, method: str, url: str, deadline: _Deadline, **kwargs) -> requests.Response:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise MarketoUnavailable("Marketo deadline passed before the request could be sent")
        if self.breaker is not None and not self.breaker.allow():
            # Raised past every retry loop: retrying a request the breaker refused would only spin.
            raise _Vetoed(MarketoCircuitOpen("Marketo keeps failing; not called until a probe succeeds"))
        self._count(kind)
        per_request = self._sync_request_timeout if kind == _SYNC else self._request_timeout
        try:
            response = self._session.request(method, url, timeout=min(per_request, remaining), **kwargs)
        # Only the exception's type is kept: its text holds the URL, with the secret or the emails.
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as error:
            self._note_unanswered(kind)
            raise MarketoUnavailable(f"Marketo {kind} request failed: {type(error).__name__}") from None
        except requests.RequestException as error:
            raise MarketoConfigError(f"Marketo {kind} request could not be made: {type(error).__name__}") from None
        if response.status_code >= 500:
            self._note_unanswered(kind)
        elif self.breaker is not None:
            self.breaker.record_success()
        return response

    def _note_unanswered(self, kind: str) -> None:
        """A request with no answer or a 5xx: the breaker counts it as a failure, the budget gives it back."""
        with self._lock:
            self.unanswered[kind] += 1
        if self.breaker is not None:
            self.breaker.record_failure()
        if self._on_unanswered is not None:
            try:
                self._on_unanswered(kind)
            except Exception as error:  # a refund that fails (database down) must not hide Marketo's failure
                logger.warning("could not give back an unanswered %s call: %s", kind, type(error).__name__)

    def _count(self, kind: str) -> None:
        """Ask on_call first: a veto means nothing is sent and nothing is counted."""
        if self._on_call is not None:
            try:
                self._on_call(kind)
            except MarketoError as veto:
                raise _Vetoed(veto) from None
        with self._lock:
            self.calls[kind] += 1

    def _back_off(self, what: str, error: MarketoError, attempt: int, deadline: _Deadline) -> None:
        """Sleep before retry `attempt + 1`, or raise MarketoUnavailable if the deadline comes first."""
        delay = min(_FIRST_BACK_OFF * 2 ** (attempt - 1), _MAX_BACK_OFF) * (1 + random.uniform(0, _BACK_OFF_JITTER))
        if delay >= deadline.remaining():
            raise MarketoUnavailable(
                f"Marketo {what} gave up at the deadline after {attempt} attempt(s); last: {error.message}", error.code
            ) from None
        logger.warning(
            "Marketo %s failed (%s), attempt %d; retrying in %.2f s", what, error.code or "network", attempt, delay
        )
        self._sleep(delay)


class _ResponseBytes(io.RawIOBase):
    """A streamed answer's body as a file, read chunk by chunk within the deadline.

    Network failures become MarketoUnavailable, keeping only the exception's type.
    """

    def __init__(self, response: requests.Response, deadline: _Deadline):
        self._chunks = response.iter_content(_FILE_CHUNK)
        self._deadline = deadline
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            if self._deadline.remaining() <= 0:
                raise MarketoUnavailable("Marketo deadline passed while downloading the export file")
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
            except requests.RequestException as error:
                raise MarketoUnavailable(f"Marketo export download failed: {type(error).__name__}") from None
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _leads_params(emails: list[str]) -> dict[str, str]:
    return {
        "filterType": "email",
        "filterValues": ",".join(emails),
        "fields": _LEAD_FIELDS,
        "batchSize": str(MAX_BATCH_SIZE),
    }


def _spellings(email: str) -> tuple[str, ...]:
    return marketo_spellings(address_key(email) or email)


def _batches_of_spellings(emails: list[str]) -> list[list[str]]:
    """The emails in batches of at most MAX_BATCH_SIZE spellings, an email's spellings never split."""
    batches: list[list[str]] = []
    size = MAX_BATCH_SIZE
    for email in emails:
        count = len(_spellings(email))
        if size + count > MAX_BATCH_SIZE:
            batches.append([])
            size = 0
        batches[-1].append(email)
        size += count
    return batches


def _unsubscribed_flags(emails: list[str], leads: list[dict]) -> dict[str, bool]:
    """email -> whether any lead with any spelling of it has unsubscribed, for the requested emails Marketo has."""
    flags: dict[str, bool] = {}
    for lead in leads:
        key = address_key(lead.get("email"))
        if key is not None:
            flags[key] = flags.get(key, False) or is_marketo_true(lead.get("unsubscribed"))
    answered = {email: address_key(email) or email for email in emails}
    return {email: flags[key] for email, key in answered.items() if key in flags}


def is_marketo_true(value: object) -> bool:
    """Marketo writes booleans as JSON true in REST answers and as "true" in bulk export CSV."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_object(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise MarketoRequestError(f"Marketo answered HTTP {response.status_code} with a body that is not a JSON object")
    return body


def _result_page(body: dict) -> list[dict]:
    result = body.get("result")
    if result is None:
        return []
    if not isinstance(result, list):
        raise MarketoRequestError("Marketo answered with a result that is not a list")
    return [lead for lead in result if isinstance(lead, dict)]


def _first_error(body: dict) -> tuple[str | None, str]:
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = errors[0].get("code")
        return (str(code) if code is not None else None), str(errors[0].get("message", ""))
    return None, "success is not true and no error was given"


def _oauth_error(response: requests.Response) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    return error if isinstance(error, str) else "no error given"


def _csv_rows(content: io.BufferedReader, response: requests.Response) -> Iterator[dict[str, str]]:
    """The rows of a CSV file (UTF-8, with or without BOM), checked against its header; closes the answer."""
    text = io.TextIOWrapper(content, encoding="utf-8-sig", newline="")
    try:
        reader = csv.DictReader(text)
        try:
            for row in reader:
                if None in row or None in row.values():
                    raise MarketoRequestError(
                        f"Marketo export file line {reader.line_num} does not have the header's "
                        f"{len(reader.fieldnames)} columns"
                    )
                yield row
        except (csv.Error, UnicodeDecodeError) as error:
            raise MarketoRequestError(f"Marketo export file is not readable CSV: {type(error).__name__}") from None
    finally:
        response.close()


def _raise_for_status(response: requests.Response) -> None:
    status = response.status_code
    if status == 414:
        raise _UriTooLong("Marketo refused the request URI as too long (HTTP 414)", "414")
    if status == 413:
        raise _BatchTooBig("Marketo refused the request body as too large (HTTP 413)", "413")
    if status >= 500 or status == 429:
        raise MarketoUnavailable(f"Marketo answered HTTP {status}", str(status))
    if not 200 <= status < 300:
        raise MarketoRequestError(f"Marketo answered HTTP {status}", str(status))


def _export_path(export_id: str, action: str) -> str:
    if not isinstance(export_id, str) or not export_id:
        raise ValueError("an export id is a non-empty string")
    return f"{_LEAD_EXPORT_PATH}/{quote(export_id, safe='')}/{action}.json"


def _iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC to the second (2026-11-01T00:00:00Z); a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _next_page_token(body: dict) -> str:
    token = body.get("nextPageToken")
    if not isinstance(token, str) or not token:
        raise MarketoRequestError("Marketo answered without a nextPageToken")
    return token


def _first_result(body: dict, what: str) -> dict:
    result = _result_page(body)
    if not result:
        raise MarketoRequestError(f"Marketo's {what} answer has no result")
    return result[0]


def _string_field(item: dict, key: str, what: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise MarketoRequestError(f"Marketo's {what} answer has no {key}")
    return value


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
