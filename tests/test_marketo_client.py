"""MarketoClient against a mocked Marketo (responses), with a fake clock and a fake sleep."""
import json
import logging
import threading
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests
import responses
from responses import matchers

from gateway.marketo.client import ActivityPage, LookupResult, MarketoClient
from gateway.marketo.errors import (
    MarketoAuthError,
    MarketoBudgetExhausted,
    MarketoConfigError,
    MarketoQuotaExceeded,
    MarketoRequestError,
    MarketoUnavailable,
)

BASE = "https://123-ABC-456.mktorest.com"
TOKEN_URL = BASE + "/identity/oauth/token"
LEADS_URL = BASE + "/rest/v1/leads.json"
CLIENT_ID = "the-client-id"
CLIENT_SECRET = "the-client-secret"
TOKEN_PARAMS = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
THANKSGIVING_2026 = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)


class FakeTime:
    """A clock that only moves when the client sleeps or a test advances it."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_time():
    return FakeTime()


@pytest.fixture
def marketo():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def wall_clock():
    """What the client's now() returns; tests may move it."""
    return {"now": THANKSGIVING_2026}


@pytest.fixture
def on_call_log():
    return []


@pytest.fixture
def make_client(fake_time, wall_clock, on_call_log):
    def make(**overrides) -> MarketoClient:
        options = dict(
            clock=fake_time.clock,
            sleep=fake_time.sleep,
            now=lambda: wall_clock["now"],
            on_call=on_call_log.append,
        )
        options.update(overrides)
        return MarketoClient(BASE + "/", CLIENT_ID, CLIENT_SECRET, **options)

    return make


# --- helpers: the answers Marketo gives and the requests the client sent ----------------


def add_token(marketo, token="tok-1", expires_in=3599, status=200, body=None):
    marketo.add(
        responses.GET,
        TOKEN_URL,
        json=body if body is not None else {"access_token": token, "token_type": "bearer", "expires_in": expires_in, "scope": "api@x"},
        status=status,
        match=[matchers.query_param_matcher(TOKEN_PARAMS)],
    )


def lead(email, unsubscribed=False, **more):
    return {"id": abs(hash(email)) % 10_000, "email": email, "unsubscribed": unsubscribed, **more}


def found(*leads, next_page_token=None, more_result=None):
    body = {"requestId": "r#1", "success": True, "result": list(leads)}
    if next_page_token is not None:
        body["nextPageToken"] = next_page_token
    if more_result is not None:
        body["moreResult"] = more_result
    return body


def marketo_error(code, message="something"):
    return {"requestId": "r#1", "success": False, "errors": [{"code": code, "message": message}]}


def lookup_params(emails, **more):
    return {"filterType": "email", "filterValues": ",".join(emails), "fields": "email,unsubscribed", "batchSize": "300", **more}


def add_lookup(marketo, emails, body=None, *, token="tok-1", status=200, **more_params):
    marketo.add(
        responses.GET,
        LEADS_URL,
        json=body if body is not None else found(),
        status=status,
        match=[
            matchers.query_param_matcher(lookup_params(emails, **more_params)),
            matchers.header_matcher({"Authorization": f"Bearer {token}"}),
        ],
    )


def add_lookup_failure(marketo, exception):
    marketo.add(responses.GET, LEADS_URL, body=exception)


def sent(marketo, url):
    """The requests sent to `url` (the host compares case-insensitively, as requests lowercases it)."""
    return [call.request for call in marketo.calls if call.request.url.split("?")[0].lower() == url.lower()]


def requested_emails(request) -> list[str]:
    """filterValues of a leads request, from its query string or its form body."""
    params = parse_qs(urlsplit(request.url).query)
    if request.method == "POST":
        params = parse_qs(request.body)
    return params["filterValues"][0].split(",")


def answer_every_batch(leads_for_email=lambda email: [lead(email)]):
    """A callback that answers any batch with the leads of the emails it asks for."""

    def callback(request):
        leads = [each for email in requested_emails(request) for each in leads_for_email(email)]
        return 200, {}, json.dumps(found(*leads))

    return callback


def emails(count, domain="example.com"):
    return [f"person{n}@{domain}" for n in range(count)]


# --- token --------------------------------------------------------------------------


def test_token_request_is_exact_and_lookups_carry_it_only_as_bearer_header(marketo, make_client):
    add_token(marketo, token="tok-1")
    add_lookup(marketo, ["a@x.com"], found(lead("a@x.com", unsubscribed=True)), token="tok-1")

    result = make_client().lookup_emails(["a@x.com"], timeout=5)

    assert result == LookupResult(unsubscribed={"a@x.com": True}, not_found=frozenset(), failed={})
    (token_request,) = sent(marketo, TOKEN_URL)
    assert token_request.method == "GET"
    assert parse_qs(urlsplit(token_request.url).query) == {k: [v] for k, v in TOKEN_PARAMS.items()}
    (lookup_request,) = sent(marketo, LEADS_URL)
    assert lookup_request.headers["Authorization"] == "Bearer tok-1"
    assert "access_token" not in lookup_request.url
    assert CLIENT_SECRET not in lookup_request.url


def test_token_is_reused_across_lookups(marketo, make_client):
    add_token(marketo)
    add_lookup(marketo, ["a@x.com"])
    add_lookup(marketo, ["b@x.com"])
    client = make_client()

    client.lookup_emails(["a@x.com"], timeout=5)
    client.lookup_emails(["b@x.com"], timeout=5)

    assert len(sent(marketo, TOKEN_URL)) == 1
    assert len(sent(marketo, LEADS_URL)) == 2


def test_token_is_renewed_before_it_expires(marketo, make_client, fake_time):
    add_token(marketo, token="tok-1", expires_in=3599)
    add_lookup(marketo, ["a@x.com"], token="tok-1")
    add_lookup(marketo, ["a@x.com"], token="tok-1")
    add_token(marketo, token="tok-2", expires_in=3599)
    add_lookup(marketo, ["a@x.com"], token="tok-2")
    client = make_client()

    client.lookup_emails(["a@x.com"], timeout=5)
    fake_time.advance(3400)  # still well inside the token's life
    client.lookup_emails(["a@x.com"], timeout=5)
    fake_time.advance(200)  # past expires_in
    client.lookup_emails(["a@x.com"], timeout=5)

    assert len(sent(marketo, TOKEN_URL)) == 2
    assert [r.headers["Authorization"] for r in sent(marketo, LEADS_URL)] == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]


@pytest.mark.parametrize("code", ["601", "602"])
def test_rejected_token_is_renewed_once_and_the_request_retried(marketo, make_client, code):
    add_token(marketo, token="tok-1")
    add_lookup(marketo, ["a@x.com"], marketo_error(code), token="tok-1")
    add_token(marketo, token="tok-2")
    add_lookup(marketo, ["a@x.com"], found(lead("a@x.com")), token="tok-2")
    client = make_client()

    result = client.lookup_emails(["a@x.com"], timeout=5)

    assert result.unsubscribed == {"a@x.com": False}
    assert len(sent(marketo, TOKEN_URL)) == 2
    assert len(sent(marketo, LEADS_URL)) == 2

    add_lookup(marketo, ["b@x.com"], token="tok-2")
    client.lookup_emails(["b@x.com"], timeout=5)
    assert len(sent(marketo, TOKEN_URL)) == 2, "the renewed token is kept"


def test_token_rejected_twice_is_an_auth_error_without_looping(marketo, make_client):
    add_token(marketo, token="tok-1")
    add_lookup(marketo, ["a@x.com"], marketo_error("601"), token="tok-1")
    add_token(marketo, token="tok-2")
    add_lookup(marketo, ["a@x.com"], marketo_error("601"), token="tok-2")

    result = make_client().lookup_emails(["a@x.com"], timeout=5)

    assert isinstance(result.failed["a@x.com"], MarketoAuthError)
    assert result.failed["a@x.com"].code == "601"
    assert len(sent(marketo, TOKEN_URL)) == 2
    assert len(sent(marketo, LEADS_URL)) == 2


@pytest.mark.parametrize("oauth_error", ["invalid_client", "unauthorized"])
def test_identity_401_is_an_auth_error_and_not_retried(marketo, make_client, fake_time, oauth_error):
    add_token(marketo, status=401, body={"error": oauth_error, "error_description": "Bad client credentials"})

    result = make_client().lookup_emails(["a@x.com", "b@x.com"], timeout=5)

    assert set(result.failed) == {"a@x.com", "b@x.com"}
    assert all(isinstance(error, MarketoAuthError) for error in result.failed.values())
    assert len(sent(marketo, TOKEN_URL)) == 1
    assert sent(marketo, LEADS_URL) == []
    assert fake_time.sleeps == []


def test_identity_outage_is_retried_then_unavailable_within_the_deadline(marketo, make_client, fake_time):
    marketo.add(responses.GET, TOKEN_URL, status=503)
    started = fake_time.now

    result = make_client().lookup_emails(["a@x.com"], timeout=3)

    assert isinstance(result.failed["a@x.com"], MarketoUnavailable)
    assert len(sent(marketo, TOKEN_URL)) > 2
    assert sent(marketo, LEADS_URL) == []
    assert fake_time.now - started <= 3


def test_identity_network_error_is_retried(marketo, make_client, fake_time):
    marketo.add(responses.GET, TOKEN_URL, body=requests.ConnectionError("refused"))
    add_token(marketo)
    add_lookup(marketo, ["a@x.com"])

    result = make_client().lookup_emails(["a@x.com"], timeout=5)

    assert result.not_found == {"a@x.com"}
    assert len(sent(marketo, TOKEN_URL)) == 2
    assert len(fake_time.sleeps) == 1


# --- batching and request forms -----------------------------------------------------------


def test_emails_go_in_batches_of_300_deduplicated_in_order(marketo, make_client, on_call_log):
    wanted = emails(650)
    with_duplicates = wanted[:10] + wanted + wanted[300:320]
    add_token(marketo)
    marketo.add_callback(responses.GET, LEADS_URL, callback=answer_every_batch())

    result = make_client().lookup_emails(with_duplicates, timeout=5)

    batches = [requested_emails(r) for r in sent(marketo, LEADS_URL)]
    assert sorted(len(batch) for batch in batches) == [50, 300, 300]
    assert sorted(batches) == sorted([wanted[:300], wanted[300:600], wanted[600:]])
    assert list(result.unsubscribed) == wanted
    assert result.not_found == frozenset() and result.failed == {}
    assert on_call_log.count("token") == 1, "concurrent batches share one token fetch"


def test_long_addresses_are_sent_as_a_form_post(marketo, make_client):
    wanted = [f"{'someone-with-a-long-name-' * 2}{n}@a-rather-long-company-domain.example.com" for n in range(120)]
    assert len(",".join(wanted)) > 8000
    add_token(marketo)
    marketo.add(
        responses.POST,
        LEADS_URL,
        json=found(lead(wanted[0], unsubscribed=True)),
        match=[
            matchers.query_param_matcher({"_method": "GET"}),
            matchers.urlencoded_params_matcher(lookup_params(wanted)),
            matchers.header_matcher({"Authorization": "Bearer tok-1", "Content-Type": "application/x-www-form-urlencoded"}),
        ],
    )

    result = make_client().lookup_emails(wanted, timeout=5)

    assert result.unsubscribed == {wanted[0]: True}
    assert result.not_found == frozenset(wanted[1:])
    assert [r.method for r in sent(marketo, LEADS_URL)] == ["POST"]


def test_uri_too_long_is_resent_as_a_form_post(marketo, make_client):
    add_token(marketo)
    add_lookup(marketo, ["a@x.com"], status=414, body={})
    marketo.add(
        responses.POST,
        LEADS_URL,
        json=found(lead("a@x.com", unsubscribed=True)),
        match=[
            matchers.query_param_matcher({"_method": "GET"}),
            matchers.urlencoded_params_matcher(lookup_params(["a@x.com"])),
        ],
    )

    result = make_client().lookup_emails(["a@x.com"], timeout=5)

    assert result.unsubscribed == {"a@x.com": True}
    assert [r.method for r in sent(marketo, LEADS_URL)] == ["GET", "POST"]


def test_pages_are_followed_with_next_page_token(marketo, make_client):
    add_token(marketo)
    add_lookup(marketo, ["a@x.com", "b@x.com"], found(lead("a@x.com"), next_page_token="PAGE2"))
    add_lookup(marketo, ["a@x.com", "b@x.com"], found(lead("b@x.com", unsubscribed=True)), nextPageToken="PAGE2")

    result = make_client().lookup_emails(["a@x.com", "b@x.com"], timeout=5)

    assert result.unsubscribed == {"a@x.com": False, "b@x.com": True}
    assert len(sent(marketo, LEADS_URL)) == 2


def test_an_empty_page_ends_paging(marketo, make_client):
    add_token(marketo)
    add_lookup(marketo, ["a@x.com"], found(next_page_token="PAGE2"))

    result = make_client().lookup_emails(["a@x.com"], timeout=5)

    assert result.not_found == {"a@x.com"}
    assert len(sent(marketo, LEADS_URL)) == 1


# --- mapping answers --------------------------------------------------------------------


def test_an_email_is_unsubscribed_if_any_of_its_leads_is_and_returned_emails_are_normalized(marketo, make_client):
    asked = ["a@x.com", "b@x.com", "c@x.com", "d@x.com"]
    add_token(marketo)
    add_lookup(
        marketo,
        asked,
        found(
            lead("a@x.com", unsubscribed=False),
            lead("A@X.com", unsubscribed=True),
            lead(" b@x.com ", unsubscribed=None),
            {"id": 7, "email": "b@x.com"},
            lead("c@x.com", unsubscribed=False),
            lead("c@x.com", unsubscribed=False),
        ),
    )

    result = make_client().lookup_emails(asked, timeout=5)

    assert result.unsubscribed == {"a@x.com": True, "b@x.com": False, "c@x.com": False}
    assert result.not_found == {"d@x.com"}
    assert result.failed == {}


def test_emails_marketo_does_not_have_are_not_found(marketo, make_client):
    add_token(marketo)
    add_lookup(marketo, ["a@x.com", "b@x.com"], found())

    result = make_client().lookup_emails(["a@x.com", "b@x.com"], timeout=5)

    assert result == LookupResult(unsubscribed={}, not_found=frozenset({"a@x.com", "b@x.com"}), failed={})


def test_no_emails_sends_nothing(marketo, make_client):
    result = make_client().lookup_emails([], timeout=5)

    assert result == LookupResult(unsubscribed={}, not_found=frozenset(), failed={})
    assert len(marketo.calls) == 0


# --- retries and back-off -----------------------------------------------------------------


@pytest.mark.parametrize("code", ["606", "615"])
def test_rate_limits_back_off_with_growing_sleeps_then_succeed(marketo, make_client, fake_time, code):
    add_token(marketo)
    for _ in range(3):
        add_lookup(marketo, ["a@x.com"], marketo_error(code))
    add_lookup(marketo, ["a@x.com"], found(lead("a@x.com", unsubscribed=True)))

    result = make_client().lookup_emails(["a@x.com"], timeout=5)

    assert result.unsubscribed == {"a@x.com": True}
    assert len(sent(marketo, LEADS_URL)) == 4
    assert len(fake_time.sleeps) == 3
    assert 0 < fake_time.sleeps[0] < 0.5
    assert fake_time.sleeps[0] < fake_time.sleeps[1] < fake_time.sleeps[2]


def test_endless_rate_limit_gives_up_without_sleeping_past_the_deadline(marketo, make_client, fake_time):
    add_token(marketo)
    marketo.add(responses.GET, LEADS_URL, json=marketo_error("606"))
    started = fake_time.now

    result = make_client().lookup_emails(["a@x.com"], timeout=3)

    error = result.failed["a@x.com"]
    assert isinstance(error, MarketoUnavailable)
    assert error.code == "606"
    assert len(sent(marketo, LEADS_URL)) > 2
    assert sum(fake_time.sleeps) <= 3
    assert fake_time.now - started <= 3


@pytest.mark.parametrize(
    "failure",
    [
        {"json": marketo_error("604")},
        {"json": marketo_error("608")},
        {"json": marketo_error("611")},
        {"json": marketo_error("713")},
        {"status": 502, "body": "Bad Gateway"},
        {"status": 503, "body": ""},
        {"body": requests.ConnectionError("connection reset")},
        {"body": requests.Timeout("read timed out")},
    ],
    ids=["604", "608", "611", "713", "http-502", "http-503", "connection-error", "timeout"],
)
def test_transient_failures_are_retried(marketo, make_client, fake_time, failure):
    add_token(marketo)
    marketo.add(responses.GET, LEADS_URL, **failure)
    add_lookup(marketo, ["a@x.com"], found(lead("a@x.com")))

    result = make_client().lookup_emails(["a@x.com"], timeout=5)

    assert result.unsubscribed == {"a@x.com": False}
    assert len(sent(marketo, LEADS_URL)) == 2
    assert len(fake_time.sleeps) == 1


def test_every_request_timeout_is_capped_by_the_time_left(marketo, make_client):
    add_token(marketo)
    add_lookup(marketo, ["a@x.com"])
    add_lookup(marketo, ["a@x.com"])
    client = make_client(request_timeout=2.0)

    client.lookup_emails(["a@x.com"], timeout=0.5)
    client.lookup_emails(["a@x.com"], timeout=30)

    timeouts = [call.request.req_kwargs["timeout"] for call in marketo.calls]
    assert timeouts == [0.5, 0.5, 2.0]


def test_a_hanging_marketo_does_not_hold_the_call_past_the_deadline(make_client):
    release, hung_request_ended = threading.Event(), threading.Event()

    def hang(request):
        release.wait(10)
        hung_request_ended.set()
        return 200, {}, json.dumps(found())

    # The hung request is still in progress when the test ends: it cannot be asserted as fired.
    with responses.RequestsMock(assert_all_requests_are_fired=False) as marketo:
        add_token(marketo)
        marketo.add_callback(responses.GET, LEADS_URL, callback=hang)
        client = make_client(clock=time.monotonic)
        started = time.monotonic()
        try:
            result = client.lookup_emails(["a@x.com"], timeout=0.2)
            elapsed = time.monotonic() - started
        finally:
            release.set()
            hung_request_ended.wait(5)

    assert elapsed < 2
    assert isinstance(result.failed["a@x.com"], MarketoUnavailable)
    assert "deadline" in result.failed["a@x.com"].message


# --- daily quota ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "now, reset",
    [
        (THANKSGIVING_2026, datetime(2026, 11, 27, 6, 0, tzinfo=timezone.utc)),  # CST, UTC-6
        (datetime(2026, 7, 15, 12, 0, tzinfo=timezone.utc), datetime(2026, 7, 16, 5, 0, tzinfo=timezone.utc)),  # CDT
        (datetime(2026, 7, 16, 3, 0, tzinfo=timezone.utc), datetime(2026, 7, 16, 5, 0, tzinfo=timezone.utc)),  # 22:00 CDT
        (datetime(2026, 3, 8, 4, 0, tzinfo=timezone.utc), datetime(2026, 3, 8, 6, 0, tzinfo=timezone.utc)),  # eve of DST
        (datetime(2026, 3, 8, 12, 0, tzinfo=timezone.utc), datetime(2026, 3, 9, 5, 0, tzinfo=timezone.utc)),  # DST day
    ],
)
def test_quota_exhausted_until_the_next_midnight_us_central(marketo, make_client, wall_clock, now, reset):
    wall_clock["now"] = now
    add_token(marketo)
    add_lookup(marketo, ["a@x.com"], marketo_error("607"))
    client = make_client()

    result = client.lookup_emails(["a@x.com"], timeout=5)

    assert isinstance(result.failed["a@x.com"], MarketoQuotaExceeded)
    assert client.quota_exhausted_until == reset
    assert client.quota_exhausted_until.utcoffset().total_seconds() == 0


def test_after_quota_exhaustion_nothing_is_sent_until_the_reset(marketo, make_client, wall_clock, fake_time):
    add_token(marketo)
    add_lookup(marketo, ["a@x.com"], marketo_error("607"))
    client = make_client()
    client.lookup_emails(["a@x.com"], timeout=5)
    assert len(marketo.calls) == 2
    fake_time.advance(5000)  # the token would need renewing, too

    later = client.lookup_emails(["b@x.com", "c@x.com"], timeout=5)

    assert set(later.failed) == {"b@x.com", "c@x.com"}
    assert all(isinstance(error, MarketoQuotaExceeded) for error in later.failed.values())
    with pytest.raises(MarketoQuotaExceeded):
        client.check_connection(timeout=5)
    assert len(marketo.calls) == 2

    wall_clock["now"] = datetime(2026, 11, 27, 6, 0, 1, tzinfo=timezone.utc)
    add_token(marketo, token="tok-2")
    add_lookup(marketo, ["b@x.com"], found(lead("b@x.com")), token="tok-2")
    assert client.lookup_emails(["b@x.com"], timeout=5).unsubscribed == {"b@x.com": False}
    assert client.quota_exhausted_until is None


def test_quota_exhaustion_in_one_batch_stops_the_batches_not_yet_sent(marketo, make_client):
    add_token(marketo)
    marketo.add(responses.GET, LEADS_URL, json=marketo_error("607"))

    result = make_client(max_concurrency=1).lookup_emails(emails(900), timeout=5)

    assert len(result.failed) == 900
    assert all(isinstance(error, MarketoQuotaExceeded) for error in result.failed.values())
    assert len(sent(marketo, LEADS_URL)) == 1


# --- errors that are not retried -------------------------------------------------------------


def test_access_denied_is_a_config_error_after_one_request(marketo, make_client, fake_time):
    add_token(marketo)
    add_lookup(marketo, ["a@x.com"], marketo_error("603", "Access denied"))

    result = make_client().lookup_emails(["a@x.com"], timeout=5)

    assert isinstance(result.failed["a@x.com"], MarketoConfigError)
    assert result.failed["a@x.com"].code == "603"
    assert len(sent(marketo, LEADS_URL)) == 1
    assert fake_time.sleeps == []


@pytest.mark.parametrize("code", ["609", "610", "612", "1035", "9999"])
def test_request_errors_are_not_retried(marketo, make_client, fake_time, code):
    add_token(marketo)
    add_lookup(marketo, ["a@x.com"], marketo_error(code))

    result = make_client().lookup_emails(["a@x.com"], timeout=5)

    assert isinstance(result.failed["a@x.com"], MarketoRequestError)
    assert result.failed["a@x.com"].code == code
    assert len(sent(marketo, LEADS_URL)) == 1
    assert fake_time.sleeps == []


@pytest.mark.parametrize("body", ["<html>proxy error</html>", "[]", '{"success": false}'])
def test_an_unreadable_answer_is_a_request_error(marketo, make_client, body):
    add_token(marketo)
    marketo.add(responses.GET, LEADS_URL, body=body)

    result = make_client().lookup_emails(["a@x.com"], timeout=5)

    assert isinstance(result.failed["a@x.com"], MarketoRequestError)
    assert len(sent(marketo, LEADS_URL)) == 1


def test_too_many_matches_splits_the_batch_down_to_the_guilty_email(marketo, make_client):
    add_token(marketo)
    add_lookup(marketo, ["a@x.com", "b@x.com", "c@x.com", "d@x.com"], marketo_error("1003"))
    add_lookup(marketo, ["a@x.com", "b@x.com"], found(lead("a@x.com", unsubscribed=True)))
    add_lookup(marketo, ["c@x.com", "d@x.com"], marketo_error("1003"))
    add_lookup(marketo, ["c@x.com"], found(lead("c@x.com")))
    add_lookup(marketo, ["d@x.com"], marketo_error("1003"))

    result = make_client().lookup_emails(["a@x.com", "b@x.com", "c@x.com", "d@x.com"], timeout=5)

    assert result.unsubscribed == {"a@x.com": True, "c@x.com": False}
    assert result.not_found == {"b@x.com"}
    assert set(result.failed) == {"d@x.com"}
    assert isinstance(result.failed["d@x.com"], MarketoRequestError)
    assert result.failed["d@x.com"].code == "1003"


def test_http_413_splits_the_batch(marketo, make_client):
    add_token(marketo)
    add_lookup(marketo, ["a@x.com", "b@x.com"], status=413, body={})
    add_lookup(marketo, ["a@x.com"], found(lead("a@x.com")))
    add_lookup(marketo, ["b@x.com"], found(lead("b@x.com", unsubscribed=True)))

    result = make_client().lookup_emails(["a@x.com", "b@x.com"], timeout=5)

    assert result.unsubscribed == {"a@x.com": False, "b@x.com": True}


def test_one_failing_batch_leaves_the_others_answered(marketo, make_client):
    wanted = emails(650)
    answer_others = answer_every_batch(lambda email: [lead(email, unsubscribed=True)])

    def callback(request):
        if wanted[300] in requested_emails(request):
            return 200, {}, json.dumps(marketo_error("609"))
        return answer_others(request)

    add_token(marketo)
    marketo.add_callback(responses.GET, LEADS_URL, callback=callback)

    result = make_client().lookup_emails(wanted, timeout=5)

    assert set(result.failed) == set(wanted[300:600])
    assert result.unsubscribed == {email: True for email in wanted[:300] + wanted[600:]}
    assert result.not_found == frozenset()


def test_no_more_batches_are_in_flight_than_max_concurrency(marketo, make_client):
    in_flight, most_in_flight, lock = [0], [0], threading.Lock()
    answer = answer_every_batch()

    def slow_answer(request):
        with lock:
            in_flight[0] += 1
            most_in_flight[0] = max(most_in_flight[0], in_flight[0])
        time.sleep(0.05)
        with lock:
            in_flight[0] -= 1
        return answer(request)

    add_token(marketo)
    marketo.add_callback(responses.GET, LEADS_URL, callback=slow_answer)

    result = make_client(max_concurrency=2).lookup_emails(emails(1500, domain="x.io"), timeout=5)

    assert len(result.unsubscribed) == 1500
    assert most_in_flight[0] == 2


# --- counting, connection check, secrets -------------------------------------------------------


def test_every_request_sent_is_counted(marketo, make_client, on_call_log):
    add_token(marketo)
    add_lookup(marketo, ["a@x.com"], marketo_error("606"))
    add_lookup(marketo, ["a@x.com"], marketo_error("601"))
    add_token(marketo, token="tok-2")
    add_lookup(marketo, ["a@x.com"], token="tok-2")
    client = make_client()

    client.lookup_emails(["a@x.com"], timeout=5)

    assert on_call_log == ["token", "lookup", "lookup", "token", "lookup"]
    assert client.calls == {"token": 2, "lookup": 3}


def test_check_connection_gets_a_token_and_probes_one_lookup(marketo, make_client):
    add_token(marketo)
    add_lookup(marketo, ["connection-test@gateway.invalid"])
    add_lookup(marketo, ["connection-test@gateway.invalid"])
    client = make_client()

    assert client.check_connection(timeout=5) is None
    assert client.check_connection(timeout=5) is None

    assert client.calls == {"token": 1, "lookup": 2}


@pytest.mark.parametrize(
    "arrange, expected",
    [
        (lambda m: add_token(m, status=401, body={"error": "invalid_client"}), MarketoAuthError),
        (lambda m: (add_token(m), add_lookup(m, ["connection-test@gateway.invalid"], marketo_error("603"))), MarketoConfigError),
        (lambda m: (add_token(m), add_lookup(m, ["connection-test@gateway.invalid"], marketo_error("607"))), MarketoQuotaExceeded),
        (lambda m: m.add(responses.GET, TOKEN_URL, body=requests.ConnectionError("refused")), MarketoUnavailable),
    ],
    ids=["bad-credentials", "access-denied", "quota", "unreachable"],
)
def test_check_connection_raises_what_stops_the_gate(marketo, make_client, arrange, expected):
    arrange(marketo)

    with pytest.raises(expected):
        make_client().check_connection(timeout=2)


def test_secrets_and_emails_stay_out_of_logs_and_errors(marketo, make_client, caplog):
    caplog.set_level(logging.DEBUG, logger="gateway")
    marketo.add(responses.GET, TOKEN_URL, body=requests.ConnectionError(f"{TOKEN_URL}?client_secret={CLIENT_SECRET}"))
    add_token(marketo, token="tok-secret-1")
    marketo.add(responses.GET, LEADS_URL, body=requests.ConnectionError(f"{LEADS_URL}?filterValues=a@x.com"))
    marketo.add(responses.GET, LEADS_URL, json=marketo_error("606"))
    marketo.add(responses.GET, LEADS_URL, json=marketo_error("603"))

    result = make_client().lookup_emails(["a@x.com"], timeout=5)

    assert caplog.records, "retries are logged"
    logged = caplog.text + str(result.failed["a@x.com"])
    for secret in (CLIENT_SECRET, "tok-secret-1", "a@x.com"):
        assert secret not in logged


# --- sync: helpers ---------------------------------------------------------------------------

PAGING_TOKEN_URL = BASE + "/rest/v1/activities/pagingtoken.json"
LEAD_CHANGES_URL = BASE + "/rest/v1/activities/leadchanges.json"
EXPORT_ID = "ce45a7a1-f19d-4ce2-882c-a3c795940a7d"
EXPORT_URL = BASE + "/bulk/v1/leads/export"
CREATE_URL = EXPORT_URL + "/create.json"
ENQUEUE_URL = f"{EXPORT_URL}/{EXPORT_ID}/enqueue.json"
STATUS_URL = f"{EXPORT_URL}/{EXPORT_ID}/status.json"
FILE_URL = f"{EXPORT_URL}/{EXPORT_ID}/file.json"


def add_sync(marketo, method, url, body=None, *, params=None, json_body=None, token="tok-1", status=200, **more):
    """An answer to a sync request, matched exactly: query string, JSON body, Bearer header."""
    match = [
        matchers.query_param_matcher(params or {}),
        matchers.header_matcher({"Authorization": f"Bearer {token}"}),
    ]
    if json_body is not None:
        match.append(matchers.json_params_matcher(json_body, strict_match=True))
    marketo.add(method, url, json=body if body is not None else ok(), status=status, match=match, **more)


def ok(*results, **envelope):
    body = {"requestId": "r#2", "success": True, **envelope}
    if results:
        body["result"] = list(results)
    return body


def activity(activity_id, lead_id, type_id=9, **more):
    return {
        "id": activity_id,
        "marketoGUID": str(activity_id),
        "leadId": lead_id,
        "activityDate": "2026-11-20T10:00:00Z",
        "activityTypeId": type_id,
        "primaryAttributeValueId": 42,
        "attributes": [],
        **more,
    }


def export_job(status="Created", **more):
    return {"exportId": EXPORT_ID, "format": "CSV", "status": status, "createdAt": "2026-11-26T15:00:00Z", **more}


def add_file(marketo, body, *, content_type="text/csv", token="tok-1", status=200):
    marketo.add(
        responses.GET,
        FILE_URL,
        body=body,
        status=status,
        content_type=content_type,
        match=[matchers.query_param_matcher({}), matchers.header_matcher({"Authorization": f"Bearer {token}"})],
    )


def vetoing(kinds, log, error=None):
    """An on_call that logs every kind and refuses those in `kinds`."""

    def on_call(kind):
        log.append(kind)
        if kind in kinds:
            raise error if error is not None else MarketoBudgetExhausted("the gate's daily Marketo budget is spent")

    return on_call


# --- sync: the activity stream ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "since",
    [
        datetime(2026, 11, 1, 0, 0, tzinfo=timezone.utc),
        datetime(2026, 10, 31, 19, 0, 0, 500_000, tzinfo=ZoneInfo("America/Chicago")),  # CDT, UTC-5
        datetime(2026, 11, 1, 0, 0),
    ],
    ids=["utc", "us-central-with-microseconds", "naive-is-utc"],
)
def test_paging_token_asks_since_an_iso_utc_moment(marketo, make_client, since):
    add_token(marketo)
    add_sync(
        marketo,
        responses.GET,
        PAGING_TOKEN_URL,
        {"requestId": "r#3", "success": True, "nextPageToken": "GIYDAOBNGEYS2MBWKQYDAORQGA5DAMBOGAYDAKZQGAYDALBQ"},
        params={"sinceDatetime": "2026-11-01T00:00:00Z"},
    )

    token = make_client().paging_token(since, timeout=5)

    assert token == "GIYDAOBNGEYS2MBWKQYDAORQGA5DAMBOGAYDAKZQGAYDALBQ"


def test_paging_token_without_a_next_page_token_is_a_request_error(marketo, make_client):
    add_token(marketo)
    add_sync(marketo, responses.GET, PAGING_TOKEN_URL, ok(), params={"sinceDatetime": "2026-11-01T00:00:00Z"})

    with pytest.raises(MarketoRequestError):
        make_client().paging_token(datetime(2026, 11, 1, tzinfo=timezone.utc), timeout=5)


def test_lead_changes_page_without_result_is_empty(marketo, make_client):
    add_token(marketo)
    add_sync(
        marketo,
        responses.GET,
        LEAD_CHANGES_URL,
        ok(nextPageToken="P2", moreResult=False),
        params={"nextPageToken": "P1", "fields": "unsubscribed", "batchSize": "300"},
    )

    page = make_client().lead_changes_page("P1", ["unsubscribed"], timeout=5)

    assert page == ActivityPage(activities=(), next_page_token="P2", more_result=False)


def test_lead_changes_page_without_next_page_token_is_a_request_error(marketo, make_client):
    add_token(marketo)
    add_sync(
        marketo,
        responses.GET,
        LEAD_CHANGES_URL,
        ok(activity(1, 100), moreResult=False),
        params={"nextPageToken": "P1", "fields": "unsubscribed", "batchSize": "300"},
    )

    with pytest.raises(MarketoRequestError):
        make_client().lead_changes_page("P1", ["unsubscribed"], timeout=5)


def test_lead_changes_page_is_one_exact_request(marketo, make_client):
    change = activity(3, 102, type_id=13, fields=[{"id": 58, "name": "unsubscribed", "newValue": "true", "oldValue": "false"}])
    add_token(marketo)
    add_sync(
        marketo,
        responses.GET,
        LEAD_CHANGES_URL,
        ok(change, nextPageToken="P2", moreResult=False),
        params={"nextPageToken": "P1", "fields": "unsubscribed", "batchSize": "300"},
    )

    page = make_client().lead_changes_page("P1", ["unsubscribed"], timeout=5)

    assert page == ActivityPage(activities=(change,), next_page_token="P2", more_result=False)


# --- sync: leads by id ---------------------------------------------------------------------------


def by_id_params(ids, fields="id,email,unsubscribed", **more):
    return {"filterType": "id", "filterValues": ",".join(map(str, ids)), "fields": fields, "batchSize": "300", **more}


def test_leads_by_id_goes_in_batches_of_300_deduplicated(marketo, make_client, on_call_log):
    ids = list(range(1, 651))

    def callback(request):
        asked = parse_qs(urlsplit(request.url).query)["filterValues"][0].split(",")
        return 200, {}, json.dumps(found(*({"id": int(i), "email": f"p{i}@x.com", "unsubscribed": False} for i in asked)))

    add_token(marketo)
    marketo.add_callback(
        responses.GET, LEADS_URL, callback=callback, match=[matchers.header_matcher({"Authorization": "Bearer tok-1"})]
    )

    leads = make_client().leads_by_id(ids + ids[:50], timeout=5)

    requests_sent = sent(marketo, LEADS_URL)
    assert [parse_qs(urlsplit(r.url).query) for r in requests_sent] == [
        {k: [v] for k, v in by_id_params(batch).items()} for batch in (ids[:300], ids[300:600], ids[600:])
    ]
    assert [each["id"] for each in leads] == ids
    assert on_call_log == ["token", "sync", "sync", "sync"]


def test_leads_by_id_follows_pages_and_asks_for_the_given_fields(marketo, make_client):
    add_token(marketo)
    add_sync(
        marketo,
        responses.GET,
        LEADS_URL,
        found({"id": 1, "email": "a@x.com"}, next_page_token="PAGE2", more_result=True),
        params=by_id_params([1, 2], fields="id,email"),
    )
    add_sync(
        marketo,
        responses.GET,
        LEADS_URL,
        found({"id": 2, "email": "b@x.com"}),
        params=by_id_params([1, 2], fields="id,email", nextPageToken="PAGE2"),
    )

    leads = make_client().leads_by_id([1, 2], fields=["id", "email"], timeout=5)

    assert leads == [{"id": 1, "email": "a@x.com"}, {"id": 2, "email": "b@x.com"}]


def test_leads_by_id_raises_if_any_batch_fails(marketo, make_client):
    ids = list(range(1, 401))
    add_token(marketo)
    add_sync(marketo, responses.GET, LEADS_URL, found({"id": 1}), params=by_id_params(ids[:300]))
    add_sync(marketo, responses.GET, LEADS_URL, marketo_error("612"), params=by_id_params(ids[300:]))

    with pytest.raises(MarketoRequestError) as raised:
        make_client().leads_by_id(ids, timeout=5)

    assert raised.value.code == "612"


def test_no_lead_ids_sends_nothing(marketo, make_client):
    assert make_client().leads_by_id([], timeout=5) == []
    assert len(marketo.calls) == 0


# --- sync: Bulk Lead Extract -----------------------------------------------------------------------


def test_create_lead_export_posts_the_job(marketo, make_client):
    job = {
        "fields": ["id", "email", "unsubscribed"],
        "format": "CSV",
        "filter": {"createdAt": {"startAt": "2026-10-01T00:00:00Z", "endAt": "2026-11-01T00:00:00Z"}},
    }
    add_token(marketo)
    add_sync(marketo, responses.POST, CREATE_URL, ok(export_job()), json_body=job)

    export_id = make_client().create_lead_export(
        ["id", "email", "unsubscribed"],
        datetime(2026, 10, 1, tzinfo=timezone.utc),
        datetime(2026, 11, 1, tzinfo=timezone.utc),
        timeout=5,
    )

    assert export_id == EXPORT_ID
    (request,) = sent(marketo, CREATE_URL)
    assert request.headers["Content-Type"] == "application/json"


def test_unsupported_export_filter_is_a_request_error_not_retried(marketo, make_client, fake_time):
    add_token(marketo)
    marketo.add(responses.POST, CREATE_URL, json=marketo_error("1035", "Unsupported filter type for target subscription"))

    with pytest.raises(MarketoRequestError) as raised:
        make_client().create_lead_export(
            ["id"], datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, tzinfo=timezone.utc), timeout=5
        )

    assert raised.value.code == "1035"
    assert len(sent(marketo, CREATE_URL)) == 1
    assert fake_time.sleeps == []


def test_enqueue_lead_export_returns_the_status(marketo, make_client):
    add_token(marketo)
    add_sync(marketo, responses.POST, ENQUEUE_URL, ok(export_job("Queued", queuedAt="2026-11-26T15:00:01Z")))

    assert make_client().enqueue_lead_export(EXPORT_ID, timeout=5) == "Queued"
    (request,) = sent(marketo, ENQUEUE_URL)
    assert not request.body


def test_full_export_queue_is_unavailable_without_retrying(marketo, make_client, fake_time):
    add_token(marketo)
    add_sync(marketo, responses.POST, ENQUEUE_URL, marketo_error("1029", "Export daily quota exceeded"))

    with pytest.raises(MarketoUnavailable) as raised:
        make_client().enqueue_lead_export(EXPORT_ID, timeout=5)

    assert raised.value.code == "1029"
    assert len(sent(marketo, ENQUEUE_URL)) == 1
    assert fake_time.sleeps == []


def test_lead_export_status_is_the_job(marketo, make_client):
    job = export_job("Completed", numberOfRecords=3, fileSize=123, fileChecksum="sha256:abc")
    add_token(marketo)
    add_sync(marketo, responses.GET, STATUS_URL, ok(job))

    assert make_client().lead_export_status(EXPORT_ID, timeout=5) == job


def test_lead_export_status_without_result_is_a_request_error(marketo, make_client):
    add_token(marketo)
    add_sync(marketo, responses.GET, STATUS_URL, ok())

    with pytest.raises(MarketoRequestError):
        make_client().lead_export_status(EXPORT_ID, timeout=5)


def test_export_ids_stay_inside_their_path_segment(marketo, make_client):
    add_token(marketo)
    marketo.add(responses.GET, EXPORT_URL + "/..%2Fx%3Fy/status.json", json=ok(export_job()))

    make_client().lead_export_status("../x?y", timeout=5)


def test_lead_export_rows_parses_the_csv(marketo, make_client):
    csv_text = (
        "\ufeffid,email,unsubscribed,company\r\n"
        '1,a@x.com,true,"Acme, Inc."\r\n'
        '2,b@x.com,,"He said ""hi""\nthen left"\r\n'
        "3,,false,\r\n"
        '4,"d@x.com",false,Ünïcode GmbH\r\n'
    )
    add_token(marketo)
    add_file(marketo, csv_text.encode("utf-8"))

    rows = make_client().lead_export_rows(EXPORT_ID, timeout=5)

    assert list(rows) == [
        {"id": "1", "email": "a@x.com", "unsubscribed": "true", "company": "Acme, Inc."},
        {"id": "2", "email": "b@x.com", "unsubscribed": "", "company": 'He said "hi"\nthen left'},
        {"id": "3", "email": "", "unsubscribed": "false", "company": ""},
        {"id": "4", "email": "d@x.com", "unsubscribed": "false", "company": "Ünïcode GmbH"},
    ]
    (call,) = [c for c in marketo.calls if c.request.url.split("?")[0].lower() == FILE_URL.lower()]
    assert call.request.req_kwargs["stream"] is True


def test_a_csv_file_labelled_json_is_still_csv(marketo, make_client):
    add_token(marketo)
    add_file(marketo, b"id,email\n1,a@x.com\n", content_type="application/json")

    assert list(make_client().lead_export_rows(EXPORT_ID, timeout=5)) == [{"id": "1", "email": "a@x.com"}]


def test_an_empty_export_file_has_no_rows(marketo, make_client):
    add_token(marketo)
    add_file(marketo, b"id,email,unsubscribed\n")

    assert list(make_client().lead_export_rows(EXPORT_ID, timeout=5)) == []


@pytest.mark.parametrize("content_type", ["application/json;charset=UTF-8", "text/plain"])
def test_an_error_envelope_instead_of_the_file_is_the_marketo_error(marketo, make_client, content_type):
    add_token(marketo)
    add_file(marketo, json.dumps(marketo_error("1003", "Export file not available")), content_type=content_type)

    with pytest.raises(MarketoRequestError) as raised:
        make_client().lead_export_rows(EXPORT_ID, timeout=5)

    assert raised.value.code == "1003"


def test_a_rejected_token_on_the_file_is_renewed_and_the_download_retried(marketo, make_client):
    add_token(marketo, token="tok-1")
    add_file(marketo, json.dumps(marketo_error("601")), content_type="application/json", token="tok-1")
    add_token(marketo, token="tok-2")
    add_file(marketo, b"id,email\n1,a@x.com\n", token="tok-2")

    assert list(make_client().lead_export_rows(EXPORT_ID, timeout=5)) == [{"id": "1", "email": "a@x.com"}]


def test_an_export_row_that_does_not_fit_the_header_is_a_request_error(marketo, make_client):
    add_token(marketo)
    add_file(marketo, b"id,email,unsubscribed\n1,a@x.com,true\n2,b@x.com\n")

    rows = make_client().lead_export_rows(EXPORT_ID, timeout=5)

    assert next(rows)["id"] == "1"
    with pytest.raises(MarketoRequestError) as raised:
        next(rows)
    assert "b@x.com" not in raised.value.message


def test_the_download_is_read_as_iterated_and_bounded_by_the_deadline(marketo, make_client, fake_time):
    lines = [f"{n},person{n}@example.com,false\n" for n in range(20_000)]  # ~600 KB, many chunks
    add_token(marketo)
    add_file(marketo, ("id,email,unsubscribed\n" + "".join(lines)).encode())
    rows = make_client().lead_export_rows(EXPORT_ID, timeout=60)

    assert next(rows) == {"id": "0", "email": "person0@example.com", "unsubscribed": "false"}
    fake_time.advance(61)
    with pytest.raises(MarketoUnavailable) as raised:
        list(rows)
    assert "deadline" in raised.value.message


def test_a_failing_file_server_is_retried(marketo, make_client, fake_time):
    add_token(marketo)
    add_file(marketo, b"Bad Gateway", status=502, content_type="text/html")
    add_file(marketo, b"id\n7\n")

    assert list(make_client().lead_export_rows(EXPORT_ID, timeout=5)) == [{"id": "7"}]
    assert len(fake_time.sleeps) == 1


# --- sync: retries, errors, counting -------------------------------------------------------------


@pytest.mark.parametrize("code", ["601", "602"])
def test_sync_renews_a_rejected_token_once(marketo, make_client, on_call_log, code):
    params = {"nextPageToken": "P1", "fields": "unsubscribed", "batchSize": "300"}
    add_token(marketo, token="tok-1")
    add_sync(marketo, responses.GET, LEAD_CHANGES_URL, marketo_error(code), params=params, token="tok-1")
    add_token(marketo, token="tok-2")
    add_sync(marketo, responses.GET, LEAD_CHANGES_URL, ok(nextPageToken="P2"), params=params, token="tok-2")

    page = make_client().lead_changes_page("P1", ["unsubscribed"], timeout=5)

    assert page.next_page_token == "P2"
    assert on_call_log == ["token", "sync", "token", "sync"]


def test_sync_backs_off_on_rate_limits(marketo, make_client, fake_time):
    params = {"sinceDatetime": "2026-11-01T00:00:00Z"}
    add_token(marketo)
    for _ in range(3):
        add_sync(marketo, responses.GET, PAGING_TOKEN_URL, marketo_error("606"), params=params)
    add_sync(marketo, responses.GET, PAGING_TOKEN_URL, ok(nextPageToken="T"), params=params)

    assert make_client().paging_token(datetime(2026, 11, 1, tzinfo=timezone.utc), timeout=5) == "T"
    assert len(fake_time.sleeps) == 3
    assert fake_time.sleeps[0] < fake_time.sleeps[1] < fake_time.sleeps[2]


def test_sync_gives_up_at_its_deadline(marketo, make_client, fake_time):
    add_token(marketo)
    marketo.add(responses.GET, STATUS_URL, json=marketo_error("615"))
    started = fake_time.now

    with pytest.raises(MarketoUnavailable) as raised:
        make_client().lead_export_status(EXPORT_ID, timeout=3)

    assert raised.value.code == "615"
    assert len(sent(marketo, STATUS_URL)) > 2
    assert fake_time.now - started <= 3


@pytest.mark.parametrize(
    "code, expected", [("603", MarketoConfigError), ("609", MarketoRequestError), ("1003", MarketoRequestError)]
)
def test_sync_errors_that_are_not_retried(marketo, make_client, fake_time, code, expected):
    add_token(marketo)
    add_sync(marketo, responses.GET, STATUS_URL, marketo_error(code))

    with pytest.raises(expected):
        make_client().lead_export_status(EXPORT_ID, timeout=5)
    assert len(sent(marketo, STATUS_URL)) == 1
    assert fake_time.sleeps == []


def test_quota_exhausted_by_sync_stops_lookups_too(marketo, make_client):
    add_token(marketo)
    add_sync(marketo, responses.GET, STATUS_URL, marketo_error("607"))
    client = make_client()

    with pytest.raises(MarketoQuotaExceeded):
        client.lead_export_status(EXPORT_ID, timeout=5)
    assert client.quota_exhausted_until == datetime(2026, 11, 27, 6, 0, tzinfo=timezone.utc)
    assert isinstance(client.lookup_emails(["a@x.com"], timeout=5).failed["a@x.com"], MarketoQuotaExceeded)
    with pytest.raises(MarketoQuotaExceeded):
        client.leads_by_id([1], timeout=5)
    assert len(marketo.calls) == 2


def test_sync_requests_have_their_own_timeout_capped_by_the_time_left(marketo, make_client):
    add_token(marketo)
    add_sync(marketo, responses.GET, STATUS_URL, ok(export_job()))
    add_sync(marketo, responses.GET, STATUS_URL, ok(export_job()))
    client = make_client(request_timeout=2.0, sync_request_timeout=10.0)

    client.lead_export_status(EXPORT_ID, timeout=30)
    client.lead_export_status(EXPORT_ID, timeout=4)

    assert [call.request.req_kwargs["timeout"] for call in marketo.calls] == [2.0, 10.0, 4.0]


def test_every_sync_request_is_counted_as_sync(marketo, make_client, on_call_log):
    add_token(marketo)
    add_sync(marketo, responses.GET, PAGING_TOKEN_URL, ok(nextPageToken="P2"), params={"sinceDatetime": "2026-11-01T00:00:00Z"})
    add_sync(marketo, responses.GET, LEAD_CHANGES_URL, ok(nextPageToken="P3"), params={"nextPageToken": "P2", "fields": "unsubscribed", "batchSize": "300"})
    add_sync(marketo, responses.GET, LEADS_URL, found(), params=by_id_params([5]))
    add_sync(marketo, responses.POST, CREATE_URL, ok(export_job()))
    add_sync(marketo, responses.POST, ENQUEUE_URL, ok(export_job("Queued")))
    add_sync(marketo, responses.GET, STATUS_URL, ok(export_job("Completed")))
    add_file(marketo, b"id\n5\n")
    add_lookup(marketo, ["a@x.com"])
    client = make_client()
    since = datetime(2026, 11, 1, tzinfo=timezone.utc)

    client.lead_changes_page(client.paging_token(since), ["unsubscribed"])
    client.leads_by_id([5])
    client.create_lead_export(["id"], since, THANKSGIVING_2026)
    client.enqueue_lead_export(EXPORT_ID)
    client.lead_export_status(EXPORT_ID)
    list(client.lead_export_rows(EXPORT_ID))
    client.lookup_emails(["a@x.com"], timeout=5)

    assert on_call_log == ["token"] + ["sync"] * 7 + ["lookup"]
    assert client.calls == {"token": 1, "sync": 7, "lookup": 1}



def test_lookups_made_for_the_sync_count_as_sync(marketo, make_client, on_call_log):
    add_token(marketo)
    add_lookup(marketo, ["a@x.com"], found(lead("a@x.com", unsubscribed=True)))
    client = make_client()

    result = client.lookup_emails(["a@x.com"], timeout=5, kind="sync")

    assert result.unsubscribed == {"a@x.com": True}
    assert on_call_log == ["token", "sync"]
    with pytest.raises(ValueError):
        client.lookup_emails(["a@x.com"], timeout=5, kind="token")

# --- budget veto ---------------------------------------------------------------------------------


def test_a_vetoed_sync_request_is_not_sent_counted_or_retried(marketo, make_client, fake_time):
    asked = []
    add_token(marketo)
    client = make_client(on_call=vetoing({"sync"}, asked))

    with pytest.raises(MarketoBudgetExhausted):
        client.lead_changes_page("P1", ["unsubscribed"], timeout=5)

    assert asked == ["token", "sync"]
    assert sent(marketo, LEAD_CHANGES_URL) == []
    assert client.calls == {"token": 1}
    assert fake_time.sleeps == []


@pytest.mark.parametrize(
    "veto", [MarketoUnavailable("budget says later"), MarketoBudgetExhausted("spent")], ids=["unavailable", "budget"]
)
def test_a_veto_of_any_marketo_error_type_is_never_retried(marketo, make_client, fake_time, veto):
    asked = []
    add_token(marketo)
    client = make_client(on_call=vetoing({"sync"}, asked, veto))

    with pytest.raises(type(veto)) as raised:
        client.leads_by_id(range(700), timeout=5)

    assert raised.value is veto
    assert asked == ["token", "sync"]
    assert fake_time.sleeps == []


def test_vetoed_lookup_batches_fail_with_the_veto(marketo, make_client, fake_time):
    asked = []
    wanted = emails(650)
    add_token(marketo)
    client = make_client(on_call=vetoing({"lookup"}, asked))

    result = client.lookup_emails(wanted, timeout=5)

    assert set(result.failed) == set(wanted)
    assert all(isinstance(error, MarketoBudgetExhausted) for error in result.failed.values())
    assert result.unsubscribed == {} and result.not_found == frozenset()
    assert sent(marketo, LEADS_URL) == []
    assert sorted(asked) == ["lookup"] * 3 + ["token"], "one veto per batch, none retried"
    assert client.calls == {"token": 1}
    assert fake_time.sleeps == []


def test_a_vetoed_token_request_sends_nothing(marketo, make_client, fake_time):
    asked = []
    client = make_client(on_call=vetoing({"token"}, asked))

    result = client.lookup_emails(["a@x.com"], timeout=5)
    with pytest.raises(MarketoBudgetExhausted):
        client.paging_token(THANKSGIVING_2026, timeout=5)

    assert isinstance(result.failed["a@x.com"], MarketoBudgetExhausted)
    assert asked == ["token", "token"]
    assert len(marketo.calls) == 0
    assert client.calls == {}
    assert fake_time.sleeps == []


def test_a_sync_veto_leaves_lookups_working(marketo, make_client):
    asked = []
    add_token(marketo)
    add_lookup(marketo, ["a@x.com"], found(lead("a@x.com", unsubscribed=True)))
    client = make_client(on_call=vetoing({"sync"}, asked))

    with pytest.raises(MarketoBudgetExhausted):
        client.lead_export_status(EXPORT_ID, timeout=5)
    result = client.lookup_emails(["a@x.com"], timeout=5)

    assert result.unsubscribed == {"a@x.com": True}
    assert asked == ["token", "sync", "lookup"]
    assert client.calls == {"token": 1, "lookup": 1}


def test_sync_keeps_secrets_out_of_logs_and_errors(marketo, make_client, caplog):
    caplog.set_level(logging.DEBUG, logger="gateway")
    add_token(marketo, token="tok-secret-1")
    marketo.add(responses.GET, LEADS_URL, body=requests.ConnectionError(f"{LEADS_URL}?filterValues=1&access_token=tok-secret-1"))
    marketo.add(responses.GET, LEADS_URL, json=marketo_error("606"))
    marketo.add(responses.GET, LEADS_URL, json=marketo_error("603"))

    with pytest.raises(MarketoConfigError) as raised:
        make_client().leads_by_id([1], timeout=5)

    assert caplog.records, "retries are logged"
    for secret in (CLIENT_SECRET, "tok-secret-1"):
        assert secret not in caplog.text + str(raised.value)
