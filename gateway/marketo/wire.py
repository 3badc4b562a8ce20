"""Marketo's wire format as the client reads and writes it: paths, error codes, answers, export files.

Pure helpers and small types shared by the transport (one request with its retries) and the client
(what the gate asks Marketo); nothing here sends a request.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator
from urllib.parse import quote

import requests

from gateway.addresses import address_key, marketo_spellings
from gateway.marketo.errors import (
    MarketoAuthError,
    MarketoError,
    MarketoRequestError,
    MarketoUnavailable,
)

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
# The kinds of call counted and passed to on_call.
_LOOKUP = "lookup"
_TOKEN = "token"
_SYNC = "sync"
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
