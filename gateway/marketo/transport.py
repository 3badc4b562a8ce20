"""How the Marketo client sends a request: one token shared by all threads, back-off within the deadline,
the 607 quota stop, the budget's veto and accounting, the circuit breaker."""
from __future__ import annotations

import logging
import collections
import io
import json
import random
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Callable, Iterator

import requests

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
from gateway.marketo.quota import next_quota_reset

from gateway.marketo.wire import (
    _SYNC,
    _TOKEN,
    MAX_URL_LENGTH,
    _ACCESS_DENIED_CODE,
    _BACK_OFF_JITTER,
    _BatchTooBig,
    _Deadline,
    _EXPORT_QUEUE_FULL_CODE,
    _FILE_CHUNK,
    _FIRST_BACK_OFF,
    _IDENTITY_PATH,
    _MAX_BACK_OFF,
    _QUOTA_EXHAUSTED_CODE,
    _ResponseBytes,
    _TOKEN_REJECTED_CODES,
    _TOKEN_RENEWAL_MARGIN,
    _TOO_MANY_MATCHES_CODE,
    _TRANSIENT_CODES,
    _TokenRejected,
    _UriTooLong,
    _Vetoed,
    _csv_rows,
    _first_error,
    _is_number,
    _json_object,
    _oauth_error,
    _raise_for_status,
)

logger = logging.getLogger("gateway.marketo.client")


class MarketoTransport:
    """One REST request to Marketo with its retries, within a deadline: the token, back-off, the quota stop,
    call accounting and the circuit breaker. `MarketoClient` builds what the gate asks on top of it."""

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


