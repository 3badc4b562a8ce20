"""The Salesforce REST client: OAuth 2.0 client credentials, then simple-salesforce for the calls.

The gate fetches the token itself (simple-salesforce's logins are SOAP or JWT; the client credentials flow is
one form POST) and hands `instance_url` and the token to `simple_salesforce.Salesforce`. A call refused with
INVALID_SESSION_ID gets a new token once and is retried. Certificates are always verified; requests takes an
extra CA from REQUESTS_CA_BUNDLE. Every call has a timeout. Tokens and the client secret never reach a log:
only Salesforce's error codes and messages are kept.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError as LibraryError
from simple_salesforce.exceptions import SalesforceExpiredSession

from gateway.salesforce.errors import (
    SalesforceAuthError,
    SalesforceError,
    SalesforceRequestError,
    SalesforceUnavailable,
)
from gateway.salesforce.interfaces import MAX_RECORDS_PER_CALL, RecordResult

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 20.0
TEMPORARY_CODES = {"REQUEST_LIMIT_EXCEEDED", "SERVER_UNAVAILABLE", "UNABLE_TO_LOCK_ROW"}

# on_call(kind, outcome): kind is token, query, create or update; outcome ok, expired, unavailable or error.
CallHook = Callable[[str, str], None]


def describe(body: Any, status: int | None = None) -> str:
    """Salesforce's own words for a failed call: `CODE: message` for each error it listed."""
    if isinstance(body, dict) and ("error" in body or "error_description" in body):
        return f"{body.get('error', 'error')}: {body.get('error_description', '')}".strip()
    if isinstance(body, list):
        parts = [f"{item.get('errorCode') or item.get('statusCode')}: {item.get('message', '')}"
                 for item in body if isinstance(item, dict)]
        if parts:
            return "; ".join(parts)
    if isinstance(body, dict) and "message" in body:
        return f"{body.get('errorCode', 'ERROR')}: {body['message']}"
    return f"HTTP {status}" if status else "no answer"


def _codes(body: Any) -> set[str]:
    if isinstance(body, list):
        return {str(item.get("errorCode")) for item in body if isinstance(item, dict)}
    if isinstance(body, dict):
        return {str(body.get("errorCode"))}
    return set()


def record_results(body: Any) -> list[RecordResult]:
    results = []
    for item in body or []:
        errors = item.get("errors") or []
        message = "; ".join(f"{e.get('statusCode')}: {e.get('message', '')}" + (
            f" ({', '.join(e['fields'])})" if e.get("fields") else "") for e in errors) or None
        results.append(RecordResult(success=bool(item.get("success")), id=item.get("id"), message=message))
    return results


class SalesforceClient:
    configured = True

    def __init__(self, login_url: str, client_id: str, client_secret: str, *, version: str = "62.0",
                 request_timeout: float = DEFAULT_TIMEOUT, on_call: CallHook | None = None):
        self.login_url = login_url.rstrip("/")
        self.version = version
        self.request_timeout = request_timeout
        self._client_id = client_id
        self._client_secret = client_secret
        self._on_call = on_call
        self._http = requests.Session()  # verify=True; REQUESTS_CA_BUNDLE adds a CA (requests' trust_env)
        self._sf: Salesforce | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the secret or the token
        return f"<SalesforceClient {self.login_url} v{self.version}>"

    # --- the token ------------------------------------------------------------------------------
    def _count(self, kind: str, outcome: str) -> None:
        if self._on_call is not None:
            try:
                self._on_call(kind, outcome)
            except Exception:  # a counter must never break a call
                log.warning("the Salesforce call hook failed", exc_info=False)

    def _authenticate(self, timeout: float) -> Salesforce:
        try:
            response = self._http.post(
                f"{self.login_url}/services/oauth2/token",
                data={"grant_type": "client_credentials", "client_id": self._client_id,
                      "client_secret": self._client_secret},
                timeout=timeout,
            )
        except requests.RequestException as error:
            self._count("token", "unavailable")
            raise SalesforceUnavailable(f"could not reach {self.login_url}: {type(error).__name__}") from None
        body = _json(response)
        if response.status_code >= 500:
            self._count("token", "unavailable")
            raise SalesforceUnavailable(describe(body, response.status_code))
        if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            self._count("token", "error")
            raise SalesforceAuthError(describe(body, response.status_code))
        self._count("token", "ok")
        return Salesforce(instance_url=body["instance_url"], session_id=body["access_token"],
                          version=self.version, session=self._http)

    def _connection(self, timeout: float, stale: Salesforce | None = None) -> Salesforce:
        with self._lock:
            if self._sf is None or self._sf is stale:
                self._sf = self._authenticate(timeout)
            return self._sf

    # --- calls ----------------------------------------------------------------------------------
    def _call(self, kind: str, action: Callable[[Salesforce], Any], timeout: float | None) -> Any:
        timeout = self.request_timeout if timeout is None else max(timeout, 0.05)
        sf = self._connection(timeout)
        for attempt in (1, 2):
            try:
                result = action(sf, timeout)
            except SalesforceExpiredSession as error:
                if attempt == 2 or "INVALID_SESSION_ID" not in _codes(error.content):
                    self._count(kind, "error")
                    raise SalesforceAuthError(describe(error.content, error.status)) from None
                self._count(kind, "expired")
                sf = self._connection(timeout, stale=sf)  # one new token, then the call once more
                continue
            except LibraryError as error:
                raise self._failure(kind, error.content, error.status) from None
            except requests.RequestException as error:
                self._count(kind, "unavailable")
                raise SalesforceUnavailable(f"could not reach Salesforce: {type(error).__name__}",
                                            maybe_processed=not _never_sent(error)) from None
            self._count(kind, "ok")
            return result
        raise AssertionError("unreachable")

    def _failure(self, kind: str, body: Any, status: int) -> SalesforceError:
        message = describe(body, status)
        if status >= 500 or _codes(body) & TEMPORARY_CODES:
            self._count(kind, "unavailable")
            return SalesforceUnavailable(message)
        self._count(kind, "error")
        return SalesforceRequestError(message)

    def query(self, soql: str, *, timeout: float | None = None) -> list[dict]:
        records: list[dict] = []
        page = self._call("query", lambda sf, t: sf.query(soql, timeout=t), timeout)
        records.extend(page.get("records", []))
        while not page.get("done", True) and page.get("nextRecordsUrl"):
            next_url = page["nextRecordsUrl"]
            page = self._call("query", lambda sf, t: sf.query_more(next_url, identifier_is_url=True, timeout=t),
                              timeout)
            records.extend(page.get("records", []))
        return records

    def create(self, records: Sequence[dict], *, timeout: float | None = None) -> list[RecordResult]:
        return self._composite("create", "POST", records, timeout)

    def update(self, records: Sequence[dict], *, timeout: float | None = None) -> list[RecordResult]:
        return self._composite("update", "PATCH", records, timeout)

    def _composite(self, kind: str, method: str, records: Sequence[dict], timeout: float | None) -> list[RecordResult]:
        if not records:
            return []
        if len(records) > MAX_RECORDS_PER_CALL:
            raise ValueError(f"composite/sobjects takes at most {MAX_RECORDS_PER_CALL} records a call")
        body = {"allOrNone": False, "records": list(records)}
        answer = self._call(kind, lambda sf, t: sf.restful("composite/sobjects", method=method, json=body, timeout=t),
                            timeout)
        results = record_results(answer)
        if len(results) != len(records):
            raise SalesforceRequestError(f"composite/sobjects answered {len(results)} results for {len(records)} records")
        return results

    def check_connection(self, *, timeout: float | None = None) -> None:
        self.query("SELECT Id FROM User LIMIT 1", timeout=timeout)


def _never_sent(error: requests.RequestException) -> bool:
    """A connection that was never made: the request surely did not reach Salesforce."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    return isinstance(error, requests.ConnectionError) and "NewConnectionError" in repr(error.args)


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
