"""MarketoClient against a mocked Marketo (responses), with a fake clock and a fake sleep."""
import json
import logging
import threading
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from responses import matchers

from gateway.marketo.client import LookupResult, MarketoClient
from gateway.marketo.errors import (
    MarketoAuthError,
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


@pytest.mark.parametrize("code", ["609", "610", "612", "1029", "9999"])
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
