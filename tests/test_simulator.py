"""Tests of the Marketo Engage simulator (gateway.marketo.simulator)."""
from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from gateway.marketo.simulator import (
    SimulatorState,
    create_simulator_app,
    seed_demo,
    start_simulator,
)

CREDS = {"grant_type": "client_credentials", "client_id": "sim-client", "client_secret": "sim-secret"}


class FakeClock:
    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeWallClock:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def wait_until(condition, timeout: float = 10.0, message: str = "condition"):
    """Poll `condition` until it is truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.005)  # poll interval, not a wait for something to happen


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def state(clock):
    return SimulatorState(clock=clock)


@pytest.fixture
def client(state):
    return create_simulator_app(state).test_client()


@pytest.fixture
def sim():
    running = start_simulator(SimulatorState())
    try:
        yield running
    finally:
        running.state.clear_faults()
        running.stop()


def get_token(client) -> str:
    resp = client.get("/identity/oauth/token", query_string=CREDS)
    assert resp.status_code == 200
    return resp.get_json()["access_token"]


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def lookup(client, token, values, **params):
    query = {"filterType": "email", "filterValues": ",".join(values), **params}
    resp = client.get("/rest/v1/leads.json", query_string=query, headers=auth(token))
    assert resp.status_code == 200
    return resp.get_json()


def error_code(body) -> str:
    assert body["success"] is False, body
    return body["errors"][0]["code"]


# ------------------------------------------------------------------ identity
def test_token_issue(client):
    resp = client.get("/identity/oauth/token", query_string=CREDS)
    assert resp.status_code == 200
    body = resp.get_json()
    assert re.fullmatch(r"[0-9a-f-]{36}:ab", body["access_token"])
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "apiuser@example.com"


def test_token_post_with_query_params(client):
    resp = client.post("/identity/oauth/token", query_string=CREDS)
    assert resp.status_code == 200
    assert resp.get_json()["access_token"].endswith(":ab")


def test_token_reused_until_expiry_then_new(client, clock):
    first = client.get("/identity/oauth/token", query_string=CREDS).get_json()
    clock.advance(100.4)
    again = client.get("/identity/oauth/token", query_string=CREDS).get_json()
    assert again["access_token"] == first["access_token"]
    assert again["expires_in"] == 3499
    clock.advance(3500)
    fresh = client.get("/identity/oauth/token", query_string=CREDS).get_json()
    assert fresh["access_token"] != first["access_token"]
    assert fresh["expires_in"] == 3600


@pytest.mark.parametrize(
    "params",
    [
        {**CREDS, "client_secret": "wrong"},
        {**CREDS, "client_id": "someone-else"},
        {"grant_type": "client_credentials"},
    ],
)
def test_bad_credentials_401(client, params):
    resp = client.get("/identity/oauth/token", query_string=params)
    assert resp.status_code == 401
    assert resp.get_json() == {"error": "invalid_client", "error_description": "Bad client credentials"}


def test_credentials_in_body_are_not_read(client):
    resp = client.post(
        "/identity/oauth/token",
        data=CREDS,
        content_type="application/x-www-form-urlencoded",
    )
    assert resp.status_code in (400, 401)


def test_identity_calls_are_not_rest_calls(client, state):
    for _ in range(3):
        get_token(client)
    stats = state.stats()
    assert stats["calls"]["token"] == 3
    assert stats["rest_calls"] == 0
    assert stats["quota_used"] == 0


# ------------------------------------------------------------------ REST auth
def test_600_without_header_and_query_token_ignored(client):
    token = get_token(client)
    resp = client.get(
        "/rest/v1/leads.json",
        query_string={"filterType": "email", "filterValues": "a@x.com", "access_token": token},
    )
    assert resp.status_code == 200
    body = resp.get_json()
    assert error_code(body) == "600"
    assert body["errors"][0]["message"] == "Access token not specified"


def test_601_unknown_token(client):
    body = lookup(client, "not-a-token:ab", ["a@x.com"])
    assert error_code(body) == "601"
    assert body["errors"][0]["message"] == "Access token invalid"


def test_602_expired_token_by_clock(client, clock):
    token = get_token(client)
    clock.advance(3600)
    body = lookup(client, token, ["a@x.com"])
    assert error_code(body) == "602"
    assert body["errors"][0]["message"] == "Access token expired"


def test_expire_tokens(client, state):
    token = get_token(client)
    assert lookup(client, token, ["a@x.com"])["success"] is True
    assert state.expire_tokens() == 1
    assert error_code(lookup(client, token, ["a@x.com"])) == "602"
    fresh = get_token(client)
    assert fresh != token
    assert lookup(client, fresh, ["a@x.com"])["success"] is True


# ------------------------------------------------------------------ leads
def test_envelope_and_request_id(client, state):
    state.add_lead("a@x.com")
    body = lookup(client, get_token(client), ["a@x.com"])
    assert re.fullmatch(r"[0-9a-f]+#[0-9a-f]+", body["requestId"])
    assert body["success"] is True
    assert "errors" not in body


def test_lookup_by_email_case_insensitive(client, state):
    lead_id = state.add_lead("Jane.Doe@Example.com", unsubscribed=True)
    body = lookup(client, get_token(client), ["jane.doe@EXAMPLE.COM"], fields="email,unsubscribed")
    assert body["success"] is True
    assert body["result"] == [{"id": lead_id, "email": "Jane.Doe@Example.com", "unsubscribed": True}]


def test_several_leads_per_email(client, state):
    a = state.add_lead("dup@x.com")
    b = state.add_lead("DUP@x.com", unsubscribed=True)
    state.add_lead("other@x.com")
    body = lookup(client, get_token(client), ["dup@x.com"], fields="unsubscribed")
    assert body["result"] == [{"id": a, "unsubscribed": False}, {"id": b, "unsubscribed": True}]


def test_no_match_is_empty_success(client):
    body = lookup(client, get_token(client), ["nobody@x.com"])
    assert body["success"] is True
    assert body["result"] == []
    assert "nextPageToken" not in body


def test_default_fields(client, state, clock):
    state.add_lead("a@x.com", attributes={"firstName": "Ann"})
    (lead,) = lookup(client, get_token(client), ["a@x.com"])["result"]
    assert set(lead) == {"id", "email", "firstName", "lastName", "updatedAt", "createdAt"}
    assert lead["firstName"] == "Ann"
    assert lead["lastName"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lead["createdAt"])


def test_fields_filtering_always_includes_id_and_unset_is_null(client, state):
    lead_id = state.add_lead("a@x.com", unsubscribed=True)
    body = lookup(
        client, get_token(client), ["a@x.com"],
        fields="unsubscribed, marketingSuspended,unsubscribedReason,someCustomField",
    )
    assert body["result"] == [
        {
            "id": lead_id,
            "unsubscribed": True,
            "marketingSuspended": False,
            "unsubscribedReason": None,
            "someCustomField": None,
        }
    ]


def test_filter_by_id(client, state):
    state.add_lead("a@x.com")
    b = state.add_lead("b@x.com", lead_id=42)
    body = lookup(client, get_token(client), [], filterType="id", filterValues="42,9999", fields="email")
    assert body["result"] == [{"id": b, "email": "b@x.com"}]
    bad = lookup(client, get_token(client), [], filterType="id", filterValues="abc")
    assert error_code(bad) == "1003"


def test_more_than_300_values_is_1003(client):
    token = get_token(client)
    values = [f"u{i}@x.com" for i in range(301)]
    assert error_code(lookup(client, token, values)) == "1003"
    assert lookup(client, token, values[:300])["success"] is True


@pytest.mark.parametrize(
    "params",
    [
        {"batchSize": "301"},
        {"batchSize": "0"},
        {"batchSize": "ten"},
        {"filterType": "company"},
        {"filterType": ""},
        {"filterValues": ""},
        {"nextPageToken": "garbage!"},
    ],
)
def test_invalid_requests_are_1003(client, params):
    body = lookup(client, get_token(client), ["a@x.com"], **params)
    assert error_code(body) == "1003"


def test_more_than_1000_matches_is_1003(client, state):
    state.add_leads([{"email": "shared@x.com"} for _ in range(1001)])
    body = lookup(client, get_token(client), ["shared@x.com"])
    assert error_code(body) == "1003"
    state.reset()
    state.add_leads([{"email": "shared@x.com"} for _ in range(1000)])
    body = lookup(client, get_token(client), ["shared@x.com"], fields="email")
    assert body["success"] is True
    assert len(body["result"]) == 300
    assert "nextPageToken" in body


def test_paging_with_next_page_token(client, state):
    ids = [state.add_lead(f"u{i}@x.com") for i in range(7)]
    emails = [f"u{i}@x.com" for i in range(7)]
    token = get_token(client)
    seen, page_token, pages = [], None, 0
    while True:
        extra = {"batchSize": "3", "fields": "email"}
        if page_token:
            extra["nextPageToken"] = page_token
        body = lookup(client, token, emails, **extra)
        assert body["success"] is True
        assert len(body["result"]) <= 3
        seen += [lead["id"] for lead in body["result"]]
        pages += 1
        page_token = body.get("nextPageToken")
        if not page_token:
            break
        assert isinstance(page_token, str)
    assert seen == ids
    assert pages == 3


def test_page_token_of_another_query_is_rejected(client, state):
    for i in range(4):
        state.add_lead(f"u{i}@x.com")
    token = get_token(client)
    emails = [f"u{i}@x.com" for i in range(4)]
    page_token = lookup(client, token, emails, batchSize="2")["nextPageToken"]
    body = lookup(client, token, emails[:3], batchSize="2", nextPageToken=page_token)
    assert error_code(body) == "1003"


def test_post_method_get_with_form_body(client, state):
    lead_id = state.add_lead("form@x.com", unsubscribed=True)
    values = ",".join(["form@x.com"] + [f"u{i}@example.com" for i in range(299)])
    resp = client.post(
        "/rest/v1/leads.json?_method=GET",
        data={"filterType": "email", "filterValues": values, "fields": "email,unsubscribed"},
        headers=auth(get_token(client)),
    )
    assert resp.status_code == 200
    assert resp.get_json()["result"] == [{"id": lead_id, "email": "form@x.com", "unsubscribed": True}]


def test_post_method_get_needs_form_content_type(client):
    resp = client.post(
        "/rest/v1/leads.json?_method=GET",
        json={"filterType": "email", "filterValues": "a@x.com"},
        headers=auth(get_token(client)),
    )
    assert error_code(resp.get_json()) == "612"


def test_post_without_method_get_is_not_served(client):
    resp = client.post(
        "/rest/v1/leads.json", data={"filterType": "email", "filterValues": "a@x.com"},
        headers=auth(get_token(client)),
    )
    assert error_code(resp.get_json()) == "610"


def test_unknown_rest_path_is_610(client, state):
    resp = client.get("/rest/v1/nothing.json", headers=auth(get_token(client)))
    assert error_code(resp.get_json()) == "610"
    assert state.stats()["rest_calls"] == 1


def test_414_on_url_over_8kb(client, state):
    token = get_token(client)
    values = ",".join(f"someone.quite.long{i:04d}@example.com" for i in range(250))
    resp = client.get(
        "/rest/v1/leads.json", query_string={"filterType": "email", "filterValues": values},
        headers=auth(token),
    )
    assert resp.status_code == 414
    assert state.stats()["rejected"]["414"] == 1
    # the same parameters in a form body go through
    resp = client.post(
        "/rest/v1/leads.json?_method=GET", data={"filterType": "email", "filterValues": values},
        headers=auth(token),
    )
    assert resp.status_code == 200
    assert resp.get_json()["success"] is True


def test_url_of_exactly_8kb_is_accepted(client):
    token = get_token(client)
    prefix = "/rest/v1/leads.json?filterType=email&filterValues=a@x.com,"
    url = prefix + "b" * (8192 - len(prefix))
    assert len(url) == 8192
    assert client.get(url, headers=auth(token)).status_code == 200
    assert client.get(url + "c", headers=auth(token)).status_code == 414


def test_413_on_body_over_1mb(client, state):
    resp = client.post(
        "/rest/v1/leads.json?_method=GET",
        data={"filterType": "email", "filterValues": "a" * (1024 * 1024)},
        headers=auth(get_token(client)),
    )
    assert resp.status_code == 413
    assert state.stats()["rejected"]["413"] == 1


# ------------------------------------------------------------------ limits
def test_606_after_100_calls_in_window_then_recovers(client, state, clock):
    token = get_token(client)
    for _ in range(100):
        assert lookup(client, token, ["a@x.com"])["success"] is True
    body = lookup(client, token, ["a@x.com"])
    assert error_code(body) == "606"
    assert body["errors"][0]["message"] == "Max rate limit '100' exceeded with in '20' secs"
    assert state.stats()["rejected"] == {"606": 1}
    clock.advance(19.9)
    assert error_code(lookup(client, token, ["a@x.com"])) == "606"
    clock.advance(0.1)
    assert lookup(client, token, ["a@x.com"])["success"] is True
    stats = state.stats()
    assert stats["rejected"] == {"606": 2}
    assert stats["rest_calls"] == 103
    assert stats["max_window_calls"] == 100


def test_rate_window_slides(client, clock):
    token = get_token(client)
    for _ in range(50):
        assert lookup(client, token, ["a@x.com"])["success"] is True
    clock.advance(10)
    for _ in range(50):
        assert lookup(client, token, ["a@x.com"])["success"] is True
    clock.advance(5)
    assert error_code(lookup(client, token, ["a@x.com"])) == "606"
    clock.advance(5.5)  # the first 50 left the window, the last 50 are still in it
    for _ in range(50):
        assert lookup(client, token, ["a@x.com"])["success"] is True
    assert error_code(lookup(client, token, ["a@x.com"])) == "606"


def test_custom_rate_limit_message():
    clock = FakeClock()
    state = SimulatorState(rate_limit_calls=2, rate_limit_window=1.5, clock=clock)
    client = create_simulator_app(state).test_client()
    token = get_token(client)
    lookup(client, token, ["a@x.com"])
    lookup(client, token, ["a@x.com"])
    body = lookup(client, token, ["a@x.com"])
    assert body["errors"][0]["message"] == "Max rate limit '2' exceeded with in '1.5' secs"


def test_607_at_daily_quota_and_reset_at_central_midnight():
    # 2026-11-02 05:30 UTC is 23:30 in Chicago (CST, UTC-6)
    wall = FakeWallClock(datetime(2026, 11, 2, 5, 30, tzinfo=timezone.utc))
    state = SimulatorState(daily_quota=3, clock=FakeClock(), wall_clock=wall)
    client = create_simulator_app(state).test_client()
    token = get_token(client)
    for _ in range(3):
        assert lookup(client, token, ["a@x.com"])["success"] is True
    body = lookup(client, token, ["a@x.com"])
    assert error_code(body) == "607"
    assert body["errors"][0]["message"] == "Daily quota reached"
    wall.advance(timedelta(minutes=20))  # 23:50 Chicago: same day
    assert error_code(lookup(client, token, ["a@x.com"])) == "607"
    wall.advance(timedelta(minutes=15))  # 00:05 Chicago: a new day
    assert lookup(client, token, ["a@x.com"])["success"] is True
    assert state.stats()["rejected"] == {"607": 2}


def test_615_when_more_than_max_concurrent_in_progress(sim):
    base = sim.base_url
    token = requests.get(f"{base}/identity/oauth/token", params=CREDS, timeout=10).json()["access_token"]
    sim.state.add_lead("a@x.com", unsubscribed=True)
    # hold every request open until the faults are cleared
    sim.state.inject_fault(latency=60)
    params = {"filterType": "email", "filterValues": "a@x.com", "fields": "unsubscribed"}
    results: list = []

    def call():
        resp = requests.get(f"{base}/rest/v1/leads.json", params=params, headers=auth(token), timeout=30)
        results.append(resp.json())

    threads = [threading.Thread(target=call) for _ in range(10)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: sim.state.stats()["in_flight"] == 10, message="10 requests in flight")
        body = requests.get(f"{base}/rest/v1/leads.json", params=params, headers=auth(token), timeout=10).json()
        assert error_code(body) == "615"
        assert body["errors"][0]["message"] == "Concurrent access limit reached"
    finally:
        sim.state.clear_faults()
        for t in threads:
            t.join(timeout=10)
    assert len(results) == 10
    assert all(r["success"] and r["result"][0]["unsubscribed"] is True for r in results)
    stats = sim.state.stats()
    assert stats["rejected"] == {"615": 1}
    assert stats["max_in_flight"] == 10
    assert stats["in_flight"] == 0
    # and capacity is back
    body = requests.get(f"{base}/rest/v1/leads.json", params=params, headers=auth(token), timeout=10).json()
    assert body["success"] is True


# ------------------------------------------------------------------ faults
@pytest.mark.parametrize("code", ["604", "606", "607", "603", "611"])
def test_fault_code_for_n_calls_then_normal(client, state, code):
    token = get_token(client)
    state.inject_fault(code, count=2)
    assert error_code(lookup(client, token, ["a@x.com"])) == code
    assert error_code(lookup(client, token, ["a@x.com"])) == code
    assert lookup(client, token, ["a@x.com"])["success"] is True
    stats = state.stats()
    assert stats["faults_served"] == 2
    assert stats["errors"] == {code: 2}
    assert stats["rejected"] == {}


def test_fault_until_cleared(client, state):
    token = get_token(client)
    state.inject_fault("608")
    for _ in range(5):
        assert error_code(lookup(client, token, ["a@x.com"])) == "608"
    assert len(state.faults()) == 1
    state.clear_faults()
    assert lookup(client, token, ["a@x.com"])["success"] is True


def test_faults_queue_in_order(client, state):
    token = get_token(client)
    state.inject_fault("604", count=1)
    state.inject_fault("611", count=1)
    assert error_code(lookup(client, token, ["a@x.com"])) == "604"
    assert error_code(lookup(client, token, ["a@x.com"])) == "611"
    assert lookup(client, token, ["a@x.com"])["success"] is True


def test_fault_bare_http_status(client, state):
    token = get_token(client)
    state.inject_fault(http_status=502, count=1)
    resp = client.get(
        "/rest/v1/leads.json", query_string={"filterType": "email", "filterValues": "a@x.com"},
        headers=auth(token),
    )
    assert resp.status_code == 502
    assert "text/html" in resp.content_type
    assert b"502 Bad Gateway" in resp.data
    assert lookup(client, token, ["a@x.com"])["success"] is True


def test_fault_applies_before_auth(client, state):
    state.inject_fault("611", count=1)
    assert error_code(lookup(client, "no-such-token", ["a@x.com"])) == "611"
    assert error_code(lookup(client, "no-such-token", ["a@x.com"])) == "601"


def test_identity_fault(client, state):
    state.inject_fault(http_status=503, count=1, paths="identity")
    resp = client.get("/identity/oauth/token", query_string=CREDS)
    assert resp.status_code == 503
    token = get_token(client)
    # REST calls were not affected
    assert lookup(client, token, ["a@x.com"])["success"] is True
    state.inject_fault("611", count=1, paths="identity")
    body = client.get("/identity/oauth/token", query_string=CREDS).get_json()
    assert error_code(body) == "611"


def test_latency_fault_is_slow_but_correct(client, state):
    state.add_lead("a@x.com", unsubscribed=True)
    token = get_token(client)
    state.inject_fault(latency=0.2, count=1)
    started = time.monotonic()
    body = lookup(client, token, ["a@x.com"], fields="unsubscribed")
    assert time.monotonic() - started >= 0.2
    assert body["result"][0]["unsubscribed"] is True
    started = time.monotonic()
    lookup(client, token, ["a@x.com"])
    assert time.monotonic() - started < 0.2


def test_clear_faults_releases_held_requests(client, state):
    token = get_token(client)
    state.inject_fault("604", latency=60, count=1)
    out = []
    worker = threading.Thread(target=lambda: out.append(lookup(client, token, ["a@x.com"])))
    worker.start()
    wait_until(lambda: state.stats()["in_flight"] == 1, message="request in flight")
    state.clear_faults()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert error_code(out[0]) == "604"  # the fault it took still answers


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"code": "604", "paths": "everything"},
        {"code": "604", "count": 0},
        {"http_status": 999},
        {"latency": -1},
    ],
)
def test_inject_fault_validation(state, kwargs):
    with pytest.raises(ValueError):
        state.inject_fault(**kwargs)


# ------------------------------------------------------------------ state
def test_set_unsubscribed_applies_to_every_lead_with_email(client, state, clock):
    a = state.add_lead("Dup@x.com")
    b = state.add_lead("dup@X.com", unsubscribed=True)
    c = state.add_lead("dup@x.com")
    other = state.add_lead("other@x.com")
    assert state.set_unsubscribed("DUP@x.com", True) == 2
    assert {lead["id"]: lead["unsubscribed"] for lead in state.leads("dup@x.com")} == {a: True, b: True, c: True}
    assert state.leads("other@x.com")[0]["unsubscribed"] is False
    assert state.set_unsubscribed("dup@x.com", True) == 0
    assert state.set_unsubscribed("dup@x.com", False) == 3
    body = lookup(client, get_token(client), ["dup@x.com", "other@x.com"], fields="unsubscribed")
    assert body["result"] == [{"id": i, "unsubscribed": False} for i in (a, b, c, other)]
    assert state.set_unsubscribed("nobody@x.com", True) == 0


def test_set_unsubscribed_touches_updated_at():
    wall = FakeWallClock(datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc))
    state = SimulatorState(wall_clock=wall)
    state.add_lead("a@x.com")
    wall.advance(timedelta(hours=1))
    state.set_unsubscribed("a@x.com", True)
    (lead,) = state.leads("a@x.com")
    assert lead["createdAt"] == "2026-11-01T12:00:00Z"
    assert lead["updatedAt"] == "2026-11-01T13:00:00Z"


def test_add_lead_ids(state):
    assert state.add_lead("a@x.com") == 1
    assert state.add_lead("b@x.com", lead_id=500) == 500
    assert state.add_lead("c@x.com") == 501
    with pytest.raises(ValueError):
        state.add_lead("d@x.com", lead_id=500)


def test_reset_forgets_everything_but_keeps_config(clock):
    state = SimulatorState(client_id="id-1", client_secret="s-1", rate_limit_calls=5, clock=clock)
    client = create_simulator_app(state).test_client()
    state.add_lead("a@x.com")
    creds = {"grant_type": "client_credentials", "client_id": "id-1", "client_secret": "s-1"}
    token = client.get("/identity/oauth/token", query_string=creds).get_json()["access_token"]
    lookup(client, token, ["a@x.com"])
    state.inject_fault("604")
    state.reset()
    stats = state.stats()
    assert stats["leads"] == 0 and stats["rest_calls"] == 0 and stats["calls"]["token"] == 0
    assert state.faults() == []
    assert error_code(lookup(client, token, ["a@x.com"])) == "601"
    fresh = client.get("/identity/oauth/token", query_string=creds).get_json()["access_token"]
    for _ in range(4):  # the 601 call above was the first of 5 in the window
        assert lookup(client, fresh, ["a@x.com"])["result"] == []
    assert error_code(lookup(client, fresh, ["a@x.com"])) == "606"


def test_stats_shape(client, state):
    token = get_token(client)
    lookup(client, token, ["a@x.com"])
    stats = state.stats()
    assert stats["calls"] == {"token": 1, "leads": 1}
    assert stats["rest_calls"] == 1
    assert stats["rejected"] == {}


def test_seed_demo(client, state):
    seed_demo(state)
    body = lookup(
        client, get_token(client),
        ["jane@example.com", "unsub@example.com", "bob@example.com", "alice@example.com", "dup@example.com"],
        fields="email,unsubscribed",
    )
    by_email: dict[str, list[bool]] = {}
    for lead in body["result"]:
        by_email.setdefault(lead["email"], []).append(lead["unsubscribed"])
    assert by_email == {
        "jane@example.com": [True],
        "unsub@example.com": [True],
        "bob@example.com": [False],
        "alice@example.com": [False],
        "dup@example.com": [False, True],
    }


# ------------------------------------------------------------------ over HTTP
def test_real_http_lookup_and_414(sim):
    sim.state.add_lead("a@x.com", unsubscribed=True)
    token = requests.get(f"{sim.base_url}/identity/oauth/token", params=CREDS, timeout=10).json()["access_token"]
    resp = requests.get(
        f"{sim.base_url}/rest/v1/leads.json",
        params={"filterType": "email", "filterValues": "A@X.com", "fields": "unsubscribed"},
        headers=auth(token), timeout=10,
    )
    assert resp.json()["result"][0]["unsubscribed"] is True
    long_values = ",".join(f"someone.quite.long{i:04d}@example.com" for i in range(250))
    resp = requests.get(
        f"{sim.base_url}/rest/v1/leads.json",
        params={"filterType": "email", "filterValues": long_values},
        headers=auth(token), timeout=10,
    )
    assert resp.status_code == 414
    resp = requests.post(
        f"{sim.base_url}/rest/v1/leads.json", params={"_method": "GET"},
        data={"filterType": "email", "filterValues": long_values}, headers=auth(token), timeout=10,
    )
    assert resp.status_code == 200 and resp.json()["success"] is True


def test_real_http_413_on_body_over_1mb_even_chunked(sim):
    token = requests.get(f"{sim.base_url}/identity/oauth/token", params=CREDS, timeout=10).json()["access_token"]
    headers = {**auth(token), "Content-Type": "application/x-www-form-urlencoded"}
    url = f"{sim.base_url}/rest/v1/leads.json?_method=GET"

    def chunks(n):  # a generator body goes out chunked, without Content-Length
        yield b"filterType=email&filterValues=a@x.com&padding="
        for _ in range(n):
            yield b"x" * 100_000

    assert requests.post(url, data=chunks(10), headers=headers, timeout=10).json()["success"] is True
    assert requests.post(url, data=chunks(11), headers=headers, timeout=10).status_code == 413
    resp = requests.post(url, data=b"filterType=email&filterValues=" + b"a" * (1024 * 1024), headers=headers, timeout=10)
    assert resp.status_code == 413
    assert sim.state.stats()["rejected"] == {"413": 2}


def test_control_api_over_http(sim):
    base = sim.base_url
    resp = requests.post(
        f"{base}/_sim/leads",
        json={"leads": [{"email": "a@x.com"}, {"email": "A@x.com", "unsubscribed": True}, {"email": "b@x.com"}]},
        timeout=10,
    )
    assert resp.status_code == 201
    ids = resp.json()["ids"]
    assert len(ids) == 3
    assert requests.post(f"{base}/_sim/leads", json={"leads": [{"unsubscribed": True}]}, timeout=10).status_code == 400

    leads = requests.get(f"{base}/_sim/leads", timeout=10).json()["leads"]
    assert [lead["id"] for lead in leads] == ids

    resp = requests.post(f"{base}/_sim/unsubscribe", json={"email": "a@X.com"}, timeout=10)
    assert resp.json()["changed"] == 1
    assert all(lead["unsubscribed"] for lead in sim.state.leads("a@x.com"))
    resp = requests.post(f"{base}/_sim/resubscribe", json={"email": "a@x.com"}, timeout=10)
    assert resp.json()["changed"] == 2
    assert not any(lead["unsubscribed"] for lead in sim.state.leads("a@x.com"))

    token = requests.get(f"{base}/identity/oauth/token", params=CREDS, timeout=10).json()["access_token"]
    params = {"filterType": "email", "filterValues": "b@x.com"}

    def rest():
        return requests.get(f"{base}/rest/v1/leads.json", params=params, headers=auth(token), timeout=10)

    resp = requests.post(f"{base}/_sim/faults", json={"code": "604", "count": 1}, timeout=10)
    assert resp.status_code == 201
    assert error_code(rest().json()) == "604"
    assert rest().json()["success"] is True
    assert requests.post(f"{base}/_sim/faults", json={"code": "604", "paths": "x"}, timeout=10).status_code == 400

    requests.post(f"{base}/_sim/faults", json={"http_status": 502}, timeout=10)
    assert rest().status_code == 502
    assert requests.get(f"{base}/_sim/faults", timeout=10).json()["faults"][0]["http_status"] == 502
    assert requests.delete(f"{base}/_sim/faults", timeout=10).status_code == 200
    assert rest().status_code == 200

    assert requests.post(f"{base}/_sim/expire-tokens", timeout=10).json()["expired"] == 1
    assert error_code(rest().json()) == "602"

    stats = requests.get(f"{base}/_sim/stats", timeout=10).json()
    assert stats["calls"]["token"] == 1
    assert stats["rest_calls"] == 5
    assert stats["errors"] == {"604": 1, "502": 1, "602": 1}

    assert requests.post(f"{base}/_sim/reset", timeout=10).status_code == 200
    assert requests.get(f"{base}/_sim/leads", timeout=10).json()["leads"] == []
    assert requests.get(f"{base}/_sim/stats", timeout=10).json()["rest_calls"] == 0
    # credentials kept
    assert requests.get(f"{base}/identity/oauth/token", params=CREDS, timeout=10).status_code == 200


def test_start_and_stop(sim):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sim.base_url)
    assert requests.get(f"{sim.base_url}/_sim/stats", timeout=10).status_code == 200
    sim.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{sim.base_url}/_sim/stats", timeout=2)


def test_main_as_subprocess_serves_and_exits_on_sigterm():
    cmd = [
        sys.executable, "-m", "gateway.marketo.simulator", "--port", "0", "--seed", "demo", "--quiet",
        "--client-id", "cli-id", "--client-secret", "cli-secret",
    ]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        lines: queue.Queue = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
        reader.start()
        try:
            line = lines.get(timeout=20)
            match = re.search(r"(http://\S+)", line)
            assert match, line
            base = match.group(1)
            creds = {"grant_type": "client_credentials", "client_id": "cli-id", "client_secret": "cli-secret"}
            token = requests.get(f"{base}/identity/oauth/token", params=creds, timeout=10).json()["access_token"]
            body = requests.get(
                f"{base}/rest/v1/leads.json",
                params={"filterType": "email", "filterValues": "jane@example.com", "fields": "unsubscribed"},
                headers=auth(token), timeout=10,
            ).json()
            assert body["result"][0]["unsubscribed"] is True
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            reader.join(timeout=10)
