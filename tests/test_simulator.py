"""Tests of the Marketo Engage simulator (gateway.simulators.marketo)."""
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

from gateway.simulators.marketo import (
    SimulatorState,
    create_simulator_app,
    seed_demo,
    start_simulator,
)
from tests.conftest import FakeClock, wait_for

CREDS = {"grant_type": "client_credentials", "client_id": "sim-client", "client_secret": "sim-secret"}


class FakeWallClock:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


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
        wait_for(lambda: sim.state.stats()["in_flight"] == 10, what="10 requests in flight")
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
    assert state.faults() == []  # a count=1 fault is used up: the next call is not slowed
    lookup(client, token, ["a@x.com"])
    assert state.stats()["faults_served"] == 1


def test_clear_faults_releases_held_requests(client, state):
    token = get_token(client)
    state.inject_fault("604", latency=60, count=1)
    out = []
    worker = threading.Thread(target=lambda: out.append(lookup(client, token, ["a@x.com"])))
    worker.start()
    wait_for(lambda: state.stats()["in_flight"] == 1, what="request in flight")
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
        sys.executable, "-m", "gateway.simulators.marketo", "--port", "0", "--seed", "demo", "--quiet",
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


# ================================================================= activities
WALL_START = datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
def wall():
    return FakeWallClock(WALL_START)


@pytest.fixture
def stream(clock, wall):
    """A state with both clocks injected, its test client and a token."""
    state = SimulatorState(clock=clock, wall_clock=wall)
    client = create_simulator_app(state).test_client()
    return state, client, get_token(client)


def rest_get(client, token, path, **params) -> dict:
    resp = client.get(path, query_string=params, headers=auth(token))
    assert resp.status_code == 200
    return resp.get_json()


def paging_token(client, token, since: str) -> str:
    body = rest_get(client, token, "/rest/v1/activities/pagingtoken.json", sinceDatetime=since)
    assert body["success"] is True, body
    return body["nextPageToken"]


def read_pages(client, token, path, page_token, **params) -> list[dict]:
    """Every page from page_token until moreResult is false."""
    pages = []
    while True:
        body = rest_get(client, token, path, nextPageToken=page_token, **params)
        assert body["success"] is True, body
        pages.append(body)
        page_token = body["nextPageToken"]
        if not body["moreResult"]:
            return pages


def items(pages) -> list[dict]:
    return [item for page in pages for item in page.get("result", [])]


def kinds(activities) -> list[tuple[int, int]]:
    return [(a["leadId"], a["activityTypeId"]) for a in activities]


def test_activity_types_lists_the_default_ids(stream):
    state, client, token = stream
    body = rest_get(client, token, "/rest/v1/activities/types.json")
    assert body["success"] is True
    by_name = {t["name"]: t for t in body["result"]}
    assert {name: by_name[name]["id"] for name in
            ("Visit Webpage", "Unsubscribe Email", "New Lead", "Change Data Value")} == {
        "Visit Webpage": 1, "Unsubscribe Email": 9, "New Lead": 12, "Change Data Value": 13}
    for entry in body["result"]:
        assert set(entry) == {"id", "name", "description", "primaryAttribute", "attributes"}
        assert set(entry["primaryAttribute"]) == {"name", "dataType"}
    cdv = by_name["Change Data Value"]
    assert {a["name"] for a in cdv["attributes"]} >= {"New Value", "Old Value", "Reason"}
    assert state.stats()["calls"]["activity_types"] == 1


def test_activity_type_ids_are_overridable(clock):
    state = SimulatorState(clock=clock, activity_type_ids={"Unsubscribe Email": 2009, "Change Data Value": 2013})
    client = create_simulator_app(state).test_client()
    token = get_token(client)
    by_name = {t["name"]: t["id"] for t in rest_get(client, token, "/rest/v1/activities/types.json")["result"]}
    assert by_name["Unsubscribe Email"] == 2009 and by_name["Change Data Value"] == 2013
    assert by_name["New Lead"] == 12
    lead = state.add_lead("a@x.com")
    start = paging_token(client, token, "2000-01-01T00:00:00Z")
    state.unsubscribe("a@x.com")
    assert kinds(state.activities()) == [(lead, 12), (lead, 2009), (lead, 2013)]
    # a client that hard-codes 9 and 13 is told so
    hard_coded = rest_get(client, token, "/rest/v1/activities.json", nextPageToken=start, activityTypeIds="9,13")
    assert error_code(hard_coded) == "1003"
    found = items(read_pages(client, token, "/rest/v1/activities.json", start, activityTypeIds="2009,2013"))
    assert kinds(found) == [(lead, 2009), (lead, 2013)]


@pytest.mark.parametrize(
    "overrides",
    [{"Unsubscribe Mail": 9}, {"Unsubscribe Email": 13}, {"New Lead": 0}, {"New Lead": "12"}],
)
def test_activity_type_override_validation(overrides):
    with pytest.raises(ValueError):
        SimulatorState(activity_type_ids=overrides)


def test_add_lead_logs_new_lead_dated_at_created_at(wall):
    state = SimulatorState(wall_clock=wall)
    first = state.add_lead("a@x.com")
    old = state.add_lead("old@x.com", created_at=WALL_START - timedelta(days=40))
    (a, b) = state.activities()
    assert a == {
        "id": 1001,
        "marketoGUID": "1001",
        "leadId": first,
        "activityDate": "2026-11-26T10:00:00Z",
        "activityTypeId": 12,
        "primaryAttributeValueId": first,
        "primaryAttributeValue": "a@x.com",
        "attributes": [{"name": "Source Type", "value": "Web service API"},
                       {"name": "Created Date", "value": "2026-11-26"}],
    }
    assert b["id"] == 1002 and b["leadId"] == old
    assert b["activityDate"] == "2026-10-17T10:00:00Z"
    assert state.leads("old@x.com")[0]["createdAt"] == "2026-10-17T10:00:00Z"


def test_durable_unsubscribe_logs_one_activity_set_per_changed_lead(wall):
    state = SimulatorState(wall_clock=wall)
    a = state.add_lead("Dup@x.com")
    b = state.add_lead("dup@x.com", unsubscribed=True)
    c = state.add_lead("DUP@x.com")
    state.add_lead("other@x.com")
    logged = len(state.activities())
    wall.advance(timedelta(minutes=5))

    assert state.unsubscribe("dup@X.com", reason="Clicked the link in Outreach #7") == 2
    new = state.activities()[logged:]
    assert kinds(new) == [(a, 9), (a, 13), (c, 9), (c, 13)]
    assert [x["id"] for x in new] == sorted(x["id"] for x in new)
    unsubscribe_email, change = new[0], new[1]
    assert unsubscribe_email["primaryAttributeValueId"] == 1001
    assert unsubscribe_email["activityDate"] == "2026-11-26T10:05:00Z"
    assert change["primaryAttributeValue"] == "Unsubscribed"
    assert change["attributes"] == [
        {"name": "New Value", "value": "true"},
        {"name": "Old Value", "value": "false"},
        {"name": "Reason", "value": "Clicked the link in Outreach #7"},
    ]
    assert all(lead["unsubscribed"] for lead in state.leads("dup@x.com"))
    assert state.unsubscribe("dup@x.com") == 0  # nothing changed, nothing logged
    assert len(state.activities()) == logged + 4

    assert state.resubscribe("dup@x.com") == 3
    again = state.activities()[logged + 4:]
    assert kinds(again) == [(a, 13), (b, 13), (c, 13)]
    assert again[0]["attributes"][:2] == [{"name": "New Value", "value": "false"},
                                          {"name": "Old Value", "value": "true"}]
    assert not any(lead["unsubscribed"] for lead in state.leads("dup@x.com"))


def test_set_unsubscribed_logs_like_unsubscribe_and_resubscribe():
    state = SimulatorState()
    lead = state.add_lead("a@x.com")
    assert state.set_unsubscribed("a@x.com", True) == 1
    assert state.set_unsubscribed("a@x.com", False) == 1
    assert kinds(state.activities()) == [(lead, 12), (lead, 9), (lead, 13), (lead, 13)]


def test_change_email_logs_a_change_of_email(state):
    lead = state.add_lead("old@x.com")
    assert state.change_email(lead, "new@x.com") is True
    change = state.activities()[-1]
    assert change["activityTypeId"] == 13
    assert change["primaryAttributeValue"] == "Email Address"
    assert change["attributes"][:2] == [{"name": "New Value", "value": "new@x.com"},
                                        {"name": "Old Value", "value": "old@x.com"}]
    assert state.leads("new@x.com")[0]["id"] == lead
    assert state.leads("old@x.com") == []
    assert state.change_email(lead, "new@x.com") is False
    with pytest.raises(ValueError):
        state.change_email(999, "x@x.com")
    with pytest.raises(ValueError):
        state.change_email(lead, " ")


def test_add_activity_and_visit_webpage_change_nothing(state):
    lead = state.add_lead("a@x.com")
    visit = state.visit_webpage(lead)
    opened = state.add_activity(lead, "Open Email", primary_attribute_value_id=5, primary_attribute_value="Mail 5")
    assert [a["id"] for a in state.activities(lead)][1:] == [visit, opened]
    assert kinds(state.activities())[1:] == [(lead, 1), (lead, 10)]
    assert state.leads("a@x.com")[0]["unsubscribed"] is False
    with pytest.raises(ValueError):
        state.add_activity(lead, "Juggle")
    with pytest.raises(ValueError):
        state.add_activity(999, "Open Email")


# ------------------------------------------------------------ paging tokens
def build_timeline(state, wall):
    """10:00 new lead, 11:00 a page visit, 12:00 an unsubscribe (two activities)."""
    lead = state.add_lead("a@x.com")
    wall.advance(timedelta(hours=1))
    state.visit_webpage(lead)
    wall.advance(timedelta(hours=1))
    state.unsubscribe("a@x.com")
    return lead


ALL_TYPES = "1,9,12,13"


@pytest.mark.parametrize(
    "since, first_id",
    [
        ("2026-11-26T09:00:00Z", 1001),
        ("2026-11-26T10:00:00Z", 1001),
        ("2026-11-26T10:30:00Z", 1002),
        ("2026-11-26T11:00:00Z", 1002),  # at or after
        ("2026-11-26T12:00:00+01:00", 1002),  # = 11:00Z
        ("2026-11-26T11:00:01Z", 1003),
        ("2026-11-26", 1001),
    ],
)
def test_paging_token_points_at_first_activity_at_or_after(stream, wall, since, first_id):
    state, client, token = stream
    build_timeline(state, wall)
    found = items(read_pages(client, token, "/rest/v1/activities.json", paging_token(client, token, since),
                             activityTypeIds=ALL_TYPES))
    assert [a["id"] for a in found] == list(range(first_id, 1005))
    assert state.stats()["calls"]["paging_token"] == 1


def test_paging_token_after_the_last_activity_is_the_end(stream, wall):
    state, client, token = stream
    build_timeline(state, wall)
    start = paging_token(client, token, "2026-11-26T12:00:01Z")
    body = rest_get(client, token, "/rest/v1/activities.json", nextPageToken=start, activityTypeIds=ALL_TYPES)
    assert body["success"] is True
    assert "result" not in body
    assert body["moreResult"] is False
    assert body["nextPageToken"] == start
    # the end, read from the beginning, is the same position
    pages = read_pages(client, token, "/rest/v1/activities.json", paging_token(client, token, "2026-01-01"),
                       activityTypeIds=ALL_TYPES)
    assert pages[-1]["nextPageToken"] == start


@pytest.mark.parametrize("params", [{}, {"sinceDatetime": "yesterday"}, {"sinceDatetime": "2026-13-01T00:00:00Z"},
                                    {"sinceDatetime": ""}])
def test_paging_token_needs_a_good_date(stream, params):
    _state, client, token = stream
    body = rest_get(client, token, "/rest/v1/activities/pagingtoken.json", **params)
    assert error_code(body) == "1003"


# ------------------------------------------------------------ activities.json
def test_activities_by_type_in_pages_with_short_pages(stream, wall):
    state, client, token = stream
    leads = [state.add_lead(f"u{i}@x.com") for i in range(3)]
    start = paging_token(client, token, "2026-11-26T10:00:00Z")
    wall.advance(timedelta(minutes=1))
    for lead in leads:
        for _ in range(3):
            state.visit_webpage(lead)
    state.unsubscribe("u0@x.com")
    for _ in range(4):
        state.visit_webpage(leads[1])
    state.unsubscribe("u2@x.com")
    state.resubscribe("u0@x.com")

    pages = read_pages(client, token, "/rest/v1/activities.json", start, activityTypeIds="9,13", batchSize="3")
    found = items(pages)
    assert kinds(found) == [(leads[0], 9), (leads[0], 13), (leads[2], 9), (leads[2], 13), (leads[0], 13)]
    assert [a["id"] for a in found] == sorted(a["id"] for a in found)
    assert all(len(page.get("result", [])) <= 3 for page in pages)
    short_with_more = [p for p in pages if p["moreResult"] and len(p.get("result", [])) < 3]
    assert short_with_more, "expected a short page with moreResult true"
    assert any("result" not in p and p["moreResult"] for p in pages), "expected an empty page with more to come"
    assert all(isinstance(p["nextPageToken"], str) and p["nextPageToken"] for p in pages)
    assert set(found[0]) == {"id", "marketoGUID", "leadId", "activityDate", "activityTypeId",
                             "primaryAttributeValueId", "primaryAttributeValue", "attributes"}
    assert state.stats()["calls"]["activities"] == len(pages)


def test_activities_token_at_the_end_picks_up_later_activities(stream, wall):
    state, client, token = stream
    state.add_lead("a@x.com")
    pages = read_pages(client, token, "/rest/v1/activities.json", paging_token(client, token, "2026-01-01"),
                       activityTypeIds="9,13")
    end = pages[-1]["nextPageToken"]
    again = rest_get(client, token, "/rest/v1/activities.json", nextPageToken=end, activityTypeIds="9,13")
    assert again["nextPageToken"] == end and again["moreResult"] is False and "result" not in again

    state.unsubscribe("a@x.com")
    first = rest_get(client, token, "/rest/v1/activities.json", nextPageToken=end, activityTypeIds="9,13")
    assert [a["activityTypeId"] for a in first["result"]] == [9, 13]
    assert first["moreResult"] is False
    # a worker that re-reads from a token it kept sees the same page again
    replay = rest_get(client, token, "/rest/v1/activities.json", nextPageToken=end, activityTypeIds="9,13")
    assert replay["result"] == first["result"]


def test_activities_batch_size_defaults_to_300(stream):
    state, client, token = stream
    state.add_leads([{"email": f"u{i}@x.com"} for i in range(301)])
    pages = read_pages(client, token, "/rest/v1/activities.json", paging_token(client, token, "2026-01-01"),
                       activityTypeIds="12")
    assert [len(p["result"]) for p in pages] == [300, 1]


@pytest.mark.parametrize(
    "params",
    [
        {"activityTypeIds": "9,13"},  # no token
        {"nextPageToken": "garbage!", "activityTypeIds": "9"},
        {"nextPageToken": "GOOD", "activityTypeIds": ""},
        {"nextPageToken": "GOOD", "activityTypeIds": "1,2,6,7,9,10,11,12,13,1,2"},  # 11 ids
        {"nextPageToken": "GOOD", "activityTypeIds": "nine"},
        {"nextPageToken": "GOOD", "activityTypeIds": "999"},
        {"nextPageToken": "GOOD", "activityTypeIds": "9", "batchSize": "301"},
        {"nextPageToken": "GOOD", "activityTypeIds": "9", "batchSize": "0"},
    ],
)
def test_activities_invalid_requests_are_1003(stream, params):
    _state, client, token = stream
    good = paging_token(client, token, "2026-01-01")
    params = {k: (good if v == "GOOD" else v) for k, v in params.items()}
    body = rest_get(client, token, "/rest/v1/activities.json", **params)
    assert error_code(body) == "1003"


def test_activities_take_up_to_10_type_ids(stream):
    _state, client, token = stream
    body = rest_get(client, token, "/rest/v1/activities.json", nextPageToken=paging_token(client, token, "2026-01-01"),
                    activityTypeIds="1,2,6,7,9,10,11,12,13,1")
    assert body["success"] is True


def test_foreign_paging_tokens_are_1003(stream):
    state, client, token = stream
    for i in range(3):
        state.add_lead(f"u{i}@x.com")
    leads_token = lookup(client, token, ["u0@x.com", "u1@x.com", "u2@x.com"], batchSize="1")["nextPageToken"]
    other_client = create_simulator_app(SimulatorState()).test_client()
    other_token = paging_token(other_client, get_token(other_client), "2026-01-01")
    before_reset = paging_token(client, token, "2026-01-01")
    state.reset()
    token = get_token(client)
    for foreign in (leads_token, other_token, before_reset):
        body = rest_get(client, token, "/rest/v1/activities.json", nextPageToken=foreign, activityTypeIds="12")
        assert error_code(body) == "1003"


# ------------------------------------------------------------ leadchanges.json
def test_lead_changes_show_unsubscribe_and_resubscribe_not_email_changes(stream, wall):
    state, client, token = stream
    lead = state.add_lead("a@x.com")
    state.add_lead("b@x.com", unsubscribed=True)
    wall.advance(timedelta(minutes=1))
    start = paging_token(client, token, "2026-11-26T10:01:00Z")
    state.unsubscribe("a@x.com")
    state.visit_webpage(lead)
    state.change_email(lead, "a.new@x.com")
    state.resubscribe("a.new@x.com")
    created = state.add_lead("c@x.com", unsubscribed=True)

    found = items(read_pages(client, token, "/rest/v1/activities/leadchanges.json", start, fields="unsubscribed"))
    assert kinds(found) == [(lead, 13), (lead, 13), (created, 12)]
    unsub, resub, new_lead = found
    assert unsub["fields"] == [{"id": 58, "name": "unsubscribed", "newValue": "true", "oldValue": "false"}]
    assert resub["fields"] == [{"id": 58, "name": "unsubscribed", "newValue": "false", "oldValue": "true"}]
    assert new_lead["fields"] == []
    assert set(unsub) == {"id", "marketoGUID", "leadId", "activityDate", "activityTypeId", "fields", "attributes"}
    assert {"name": "Reason", "value": "Unsubscribed via email link"} in unsub["attributes"]

    by_email = items(read_pages(client, token, "/rest/v1/activities/leadchanges.json", start, fields="EMAIL"))
    assert [a["fields"] for a in by_email if a["activityTypeId"] == 13] == [
        [{"id": 2, "name": "email", "newValue": "a.new@x.com", "oldValue": "a@x.com"}]
    ]
    both = items(read_pages(client, token, "/rest/v1/activities/leadchanges.json", start,
                            fields="unsubscribed,email"))
    assert len([a for a in both if a["activityTypeId"] == 13]) == 3
    assert state.stats()["calls"]["lead_changes"] >= 3


def test_lead_changes_page_like_activities(stream):
    state, client, token = stream
    lead = state.add_lead("a@x.com")
    start = paging_token(client, token, "2026-01-01")
    for _ in range(5):
        state.visit_webpage(lead)
    state.unsubscribe("a@x.com")
    pages = read_pages(client, token, "/rest/v1/activities/leadchanges.json", start,
                       fields="unsubscribed", batchSize="2")
    assert kinds(items(pages)) == [(lead, 12), (lead, 13)]
    assert any(p["moreResult"] and "result" not in p for p in pages)
    assert all(p["nextPageToken"] for p in pages)


@pytest.mark.parametrize("params", [{"fields": ""}, {}, {"fields": "unsubscribed", "nextPageToken": ""},
                                    {"fields": "unsubscribed", "batchSize": "500"}])
def test_lead_changes_invalid_requests_are_1003(stream, params):
    _state, client, token = stream
    query = {"nextPageToken": paging_token(client, token, "2026-01-01"), **params}
    body = rest_get(client, token, "/rest/v1/activities/leadchanges.json", **query)
    assert error_code(body) == "1003"


def test_filter_by_several_ids(client, state):
    ids = [state.add_lead(f"u{i}@x.com") for i in range(4)]
    body = lookup(client, get_token(client), [], filterType="id", filterValues="1,2,3", fields="email")
    assert body["result"] == [{"id": i, "email": f"u{i - 1}@x.com"} for i in ids[:3]]


# ================================================================ bulk export
EXPORT = "/bulk/v1/leads/export"


def window(start: datetime, days: float = 31) -> dict:
    return {"createdAt": {"startAt": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                          "endAt": (start + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")}}


def create_export(client, token, export_filter, fields=("id", "email", "unsubscribed"), **extra) -> dict:
    body = {"fields": list(fields), "format": "CSV", "filter": export_filter, **extra}
    resp = client.post(f"{EXPORT}/create.json", json=body, headers=auth(token))
    assert resp.status_code == 200
    return resp.get_json()


def export_call(client, token, export_id, action) -> dict:
    method = client.get if action == "status" else client.post
    resp = method(f"{EXPORT}/{export_id}/{action}.json", headers=auth(token))
    assert resp.status_code == 200
    return resp.get_json()


def export_job(client, token, export_filter, **kwargs) -> str:
    body = create_export(client, token, export_filter, **kwargs)
    export_id = body["result"][0]["exportId"]
    assert export_call(client, token, export_id, "enqueue")["success"] is True
    return export_id


def poll_until_done(client, token, export_id, limit=10) -> list[str]:
    statuses = []
    for _ in range(limit):
        status = export_call(client, token, export_id, "status")["result"][0]
        statuses.append(status["status"])
        if status["status"] in ("Completed", "Failed", "Canceled"):
            return statuses
    raise AssertionError(f"export {export_id} not done after {limit} polls: {statuses}")


def export_file(client, token, export_id, **headers):
    return client.get(f"{EXPORT}/{export_id}/file.json", headers={**auth(token), **headers})


def test_export_lifecycle_and_csv_file(stream, wall):
    state, client, token = stream
    state.add_lead("old@x.com", created_at=WALL_START - timedelta(days=100))
    b = state.add_lead("b@x.com", unsubscribed=True, attributes={"firstName": 'Bo, "Jr"'},
                       created_at=WALL_START - timedelta(days=20))
    c = state.add_lead("c@x.com", created_at=WALL_START - timedelta(days=10))

    created = create_export(client, token, window(WALL_START - timedelta(days=30)),
                            fields=("id", "email", "unsubscribed", "firstName"))
    assert created["success"] is True
    (job,) = created["result"]
    assert job["status"] == "Created" and job["format"] == "CSV"
    assert job["createdAt"] == "2026-11-26T10:00:00Z"
    export_id = job["exportId"]
    assert export_call(client, token, export_id, "status")["result"][0]["status"] == "Created"

    wall.advance(timedelta(minutes=1))
    queued = export_call(client, token, export_id, "enqueue")["result"][0]
    assert queued["status"] == "Queued" and queued["queuedAt"] == "2026-11-26T10:01:00Z"
    wall.advance(timedelta(minutes=1))
    processing = export_call(client, token, export_id, "status")["result"][0]
    assert processing["status"] == "Processing" and processing["startedAt"] == "2026-11-26T10:02:00Z"
    assert "fileSize" not in processing
    wall.advance(timedelta(minutes=1))
    done = export_call(client, token, export_id, "status")["result"][0]
    expected = f'id,email,unsubscribed,firstName\n{b},b@x.com,true,"Bo, ""Jr"""\n{c},c@x.com,false,null\n'.encode()
    assert done["status"] == "Completed"
    assert done["finishedAt"] == "2026-11-26T10:03:00Z"
    assert done["numberOfRecords"] == 2
    assert done["fileSize"] == len(expected)
    assert done["fileChecksum"].startswith("sha256:")

    resp = export_file(client, token, export_id)
    assert resp.status_code == 200
    assert resp.mimetype == "text/csv"
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.data == expected
    calls = state.stats()["calls"]
    counted = {kind: calls[kind] for kind in ("export_create", "export_enqueue", "export_status", "export_file")}
    assert counted == {"export_create": 1, "export_enqueue": 1, "export_status": 3, "export_file": 1}
    assert state.stats()["export_jobs"] == {"Completed": 1}


def test_export_file_is_fixed_at_completion(stream):
    state, client, token = stream
    state.add_lead("a@x.com")
    export_id = export_job(client, token, window(WALL_START - timedelta(days=1)))
    assert export_call(client, token, export_id, "status")["result"][0]["status"] == "Processing"
    state.unsubscribe("a@x.com")  # while processing: in the file
    assert poll_until_done(client, token, export_id)[-1] == "Completed"
    first = export_file(client, token, export_id).data
    assert first.decode().splitlines()[1].endswith(",true")
    state.resubscribe("a@x.com")  # after completion: not in the file
    state.add_lead("b@x.com")
    assert export_file(client, token, export_id).data == first


def test_consecutive_31_day_windows_cover_every_lead(stream):
    state, client, token = stream
    ids = [state.add_lead(f"u{i}@x.com", unsubscribed=i % 2 == 0, created_at=WALL_START - timedelta(days=5 * i))
           for i in range(20)]
    seen = {}
    start = WALL_START - timedelta(days=100)
    while start < WALL_START:
        export_id = export_job(client, token, window(start))
        assert poll_until_done(client, token, export_id)[-1] == "Completed"
        for row in export_file(client, token, export_id).data.decode().splitlines()[1:]:
            lead_id, email, unsubscribed = row.split(",")
            seen[int(lead_id)] = (email, unsubscribed)
        start += timedelta(days=31)
    assert sorted(seen) == sorted(ids)
    assert {seen[i][1] for i in ids[::2]} == {"true"}


def test_export_file_range(stream):
    state, client, token = stream
    for i in range(5):
        state.add_lead(f"someone{i}@example.com")
    export_id = export_job(client, token, window(WALL_START - timedelta(days=1)))
    poll_until_done(client, token, export_id)
    full = export_file(client, token, export_id).data
    size = len(full)

    tail = export_file(client, token, export_id, Range="bytes=10-")
    assert tail.status_code == 206
    assert tail.data == full[10:]
    assert tail.headers["Content-Range"] == f"bytes 10-{size - 1}/{size}"
    head = export_file(client, token, export_id, Range="bytes=0-9")
    assert head.status_code == 206 and head.data == full[:10]
    assert head.headers["Content-Range"] == f"bytes 0-9/{size}"
    beyond = export_file(client, token, export_id, Range=f"bytes={size}-")
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{size}"


def test_export_file_before_completion_or_unknown_is_404(stream):
    state, client, token = stream
    body = create_export(client, token, window(WALL_START - timedelta(days=1)))
    export_id = body["result"][0]["exportId"]
    for job in (export_id, "no-such-export"):
        resp = export_file(client, token, job)
        assert resp.status_code == 404
        assert resp.mimetype == "text/plain"
    assert error_code(export_call(client, token, "no-such-export", "status")) == "1003"
    assert error_code(export_call(client, token, "no-such-export", "enqueue")) == "1003"


def test_export_cancel(stream):
    state, client, token = stream
    created_only = create_export(client, token, window(WALL_START))["result"][0]["exportId"]
    queued = export_job(client, token, window(WALL_START))
    for export_id in (created_only, queued):
        assert export_call(client, token, export_id, "cancel")["result"][0]["status"] == "Canceled"
        assert error_code(export_call(client, token, export_id, "cancel")) == "1003"
        assert error_code(export_call(client, token, export_id, "enqueue")) == "1003"
    assert export_call(client, token, queued, "status")["result"][0]["status"] == "Canceled"
    assert state.stats()["calls"]["export_cancel"] == 4


@pytest.mark.parametrize("polls, expected", [(1, ["Completed"]), (2, ["Processing", "Completed"]),
                                              (3, ["Processing", "Processing", "Completed"])])
def test_export_polls_to_complete(clock, polls, expected):
    state = SimulatorState(clock=clock, export_polls_to_complete=polls)
    client = create_simulator_app(state).test_client()
    token = get_token(client)
    export_id = export_job(client, token, window(datetime(2026, 1, 1, tzinfo=timezone.utc)))
    assert poll_until_done(client, token, export_id) == expected


@pytest.mark.parametrize("kwargs", [{"export_polls_to_complete": 0}, {"export_filters_supported": ("smartListName",)}, {"export_job_seconds": -1}])
def test_export_options_validation(kwargs):
    with pytest.raises(ValueError):
        SimulatorState(**kwargs)


@pytest.mark.parametrize(
    "days, ok",
    [(31, True), (31 + 1 / 86400, False), (30.5, True), (-1, False)],
)
def test_export_date_range_is_31_days_at_most(stream, days, ok):
    _state, client, token = stream
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    body = create_export(client, token, window(start, days))
    if ok:
        assert body["result"][0]["status"] == "Created"
    else:
        assert error_code(body) == "1003"


@pytest.mark.parametrize(
    "export_filter, code",
    [
        ({"updatedAt": {"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-02T00:00:00Z"}}, "1035"),
        ({"smartListId": 1001}, "1035"),
        ({"staticListName": "Sales"}, "1035"),
        ({}, "1003"),
        (None, "1003"),
        ({"createdAt": {"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-02T00:00:00Z"},
          "updatedAt": {"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-02T00:00:00Z"}}, "1003"),
        ({"modifiedSince": "2026-01-01"}, "1003"),
        ({"createdAt": {"startAt": "2026-01-01T00:00:00Z"}}, "1003"),
        ({"createdAt": {"startAt": "soon", "endAt": "later"}}, "1003"),
    ],
)
def test_export_filter_rules(stream, export_filter, code):
    state, client, token = stream
    body = create_export(client, token, export_filter)
    assert error_code(body) == code
    if code == "1035":
        assert body["errors"][0]["message"] == "Unsupported filter type for target subscription"
    assert state.exports() == []


def test_updated_at_filter_when_the_subscription_has_it(clock, wall):
    state = SimulatorState(clock=clock, wall_clock=wall, export_filters_supported=("createdAt", "updatedAt"))
    client = create_simulator_app(state).test_client()
    token = get_token(client)
    state.add_lead("old@x.com", created_at=WALL_START - timedelta(days=90))
    touched = state.add_lead("touched@x.com", created_at=WALL_START - timedelta(days=90))
    state.unsubscribe("touched@x.com")  # updatedAt = now
    export_id = export_job(client, token, {"updatedAt": window(WALL_START - timedelta(days=1))["createdAt"]})
    poll_until_done(client, token, export_id)
    assert export_file(client, token, export_id).data.decode().splitlines()[1:] == [f"{touched},touched@x.com,true"]


@pytest.mark.parametrize(
    "body, code",
    [
        ({"format": "CSV"}, "1003"),  # no fields
        ({"fields": []}, "1003"),
        ({"fields": ["id", ""]}, "1003"),
        ({"fields": ["id"], "format": "XLS"}, "1003"),
        ({"fields": ["id"], "columnHeaderNames": ["Id"]}, "1003"),
    ],
)
def test_export_create_invalid_bodies(stream, body, code):
    _state, client, token = stream
    body = {"filter": window(WALL_START), **body}
    resp = client.post(f"{EXPORT}/create.json", json=body, headers=auth(token))
    assert error_code(resp.get_json()) == code


def test_export_create_needs_a_json_body(stream):
    _state, client, token = stream
    resp = client.post(f"{EXPORT}/create.json", data="fields=id", headers=auth(token),
                       content_type="application/x-www-form-urlencoded")
    assert error_code(resp.get_json()) == "612"
    resp = client.post(f"{EXPORT}/create.json", data="{not json", headers=auth(token),
                       content_type="application/json")
    assert error_code(resp.get_json()) == "609"


def test_export_column_header_names(stream):
    state, client, token = stream
    state.add_lead("a@x.com")
    export_id = export_job(client, token, window(WALL_START - timedelta(days=1)),
                           columnHeaderNames={"email": "Email Address"})
    poll_until_done(client, token, export_id)
    assert export_file(client, token, export_id).data.decode().splitlines()[0] == "id,Email Address,unsubscribed"


def test_export_queue_holds_10_and_runs_2_at_a_time(stream):
    state, client, token = stream
    ids = [create_export(client, token, window(WALL_START))["result"][0]["exportId"] for _ in range(11)]
    for export_id in ids[:10]:
        assert export_call(client, token, export_id, "enqueue")["result"][0]["status"] == "Queued"
    body = export_call(client, token, ids[10], "enqueue")
    assert error_code(body) == "1029"
    assert error_code(export_call(client, token, ids[0], "enqueue")) == "1029"  # already queued

    export_call(client, token, ids[0], "status")  # one step: the two oldest start
    assert state.stats()["export_jobs"] == {"Processing": 2, "Queued": 8, "Created": 1}
    assert [job["status"] for job in state.exports()[:3]] == ["Processing", "Processing", "Queued"]
    assert error_code(export_call(client, token, ids[10], "enqueue")) == "1029"  # processing jobs count too

    export_call(client, token, ids[2], "cancel")
    assert export_call(client, token, ids[10], "enqueue")["result"][0]["status"] == "Queued"
    export_call(client, token, ids[0], "status")  # the two finish
    assert [job["status"] for job in state.exports()[:5]] == [
        "Completed", "Completed", "Canceled", "Queued", "Queued"]
    export_call(client, token, ids[0], "status")  # the next two start, oldest first
    assert [job["status"] for job in state.exports()[:6]] == [
        "Completed", "Completed", "Canceled", "Processing", "Processing", "Queued"]


def test_failed_export(stream):
    state, client, token = stream
    state.add_lead("a@x.com")
    state.fail_next_export()
    failed = export_job(client, token, window(WALL_START - timedelta(days=1)))
    assert poll_until_done(client, token, failed) == ["Processing", "Failed"]
    status = export_call(client, token, failed, "status")["result"][0]
    assert status["status"] == "Failed" and status["errorMsg"] and "fileSize" not in status
    assert export_file(client, token, failed).status_code == 404
    retry = export_job(client, token, window(WALL_START - timedelta(days=1)))
    assert poll_until_done(client, token, retry)[-1] == "Completed"
    with pytest.raises(ValueError):
        state.fail_next_export(0)


# ------------------------------------------------- shared rules, control API
@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/rest/v1/activities/types.json"),
        ("get", "/rest/v1/activities/pagingtoken.json?sinceDatetime=2026-01-01"),
        ("get", "/rest/v1/activities.json?nextPageToken=x&activityTypeIds=9"),
        ("get", "/rest/v1/activities/leadchanges.json?nextPageToken=x&fields=unsubscribed"),
        ("post", f"{EXPORT}/create.json"),
        ("post", f"{EXPORT}/abc/enqueue.json"),
        ("get", f"{EXPORT}/abc/status.json"),
        ("get", f"{EXPORT}/abc/file.json"),
        ("post", f"{EXPORT}/abc/cancel.json"),
    ],
)
def test_new_endpoints_share_auth_faults_and_limits(client, state, method, path):
    call = getattr(client, method)
    assert error_code(call(path).get_json()) == "600"
    assert error_code(call(path, headers=auth("nope:ab")).get_json()) == "601"
    state.inject_fault("611", count=1)
    assert error_code(call(path, headers=auth(get_token(client))).get_json()) == "611"
    stats = state.stats()
    assert stats["rest_calls"] == 3 and stats["quota_used"] == 3
    assert stats["errors"] == {"600": 1, "601": 1, "611": 1}


def test_unknown_bulk_path_is_610(client, state):
    resp = client.get("/bulk/v1/activities/export/x/status.json", headers=auth(get_token(client)))
    assert error_code(resp.get_json()) == "610"


def test_activity_and_export_control_api_over_http(sim):
    base = sim.base_url
    created = (WALL_START - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    resp = requests.post(f"{base}/_sim/leads", json={"leads": [
        {"email": "a@x.com", "createdAt": created}, {"email": "A@x.com"}]}, timeout=10)
    a, b = resp.json()["ids"]
    assert requests.post(f"{base}/_sim/leads", json={"leads": [{"email": "c@x.com", "createdAt": "nope"}]},
                         timeout=10).status_code == 400
    token = requests.get(f"{base}/identity/oauth/token", params=CREDS, timeout=10).json()["access_token"]
    since = datetime.now(timezone.utc) - timedelta(minutes=5)
    start = requests.get(f"{base}/rest/v1/activities/pagingtoken.json",
                         params={"sinceDatetime": since.strftime("%Y-%m-%dT%H:%M:%SZ")},
                         headers=auth(token), timeout=10).json()["nextPageToken"]

    resp = requests.post(f"{base}/_sim/unsubscribe", json={"email": "a@x.com", "reason": "Too many emails"},
                         timeout=10)
    assert resp.json()["changed"] == 2
    resp = requests.post(f"{base}/_sim/change-email", json={"leadId": b, "email": "b@x.com"}, timeout=10)
    assert resp.json()["changed"] is True
    assert requests.post(f"{base}/_sim/change-email", json={"leadId": 999, "email": "z@x.com"},
                         timeout=10).status_code == 400
    assert requests.post(f"{base}/_sim/resubscribe", json={"email": "a@x.com"}, timeout=10).json()["changed"] == 1

    log = requests.get(f"{base}/_sim/activities", timeout=10).json()["activities"]
    assert kinds(log) == [(a, 12), (b, 12), (a, 9), (a, 13), (b, 9), (b, 13), (b, 13), (a, 13)]
    assert log[0]["activityDate"] == created
    assert kinds(requests.get(f"{base}/_sim/activities", params={"leadId": a}, timeout=10).json()["activities"]) \
        == [(a, 12), (a, 9), (a, 13), (a, 13)]

    # the padded token goes through requests' URL encoding
    changes = requests.get(f"{base}/rest/v1/activities/leadchanges.json",
                           params={"nextPageToken": start, "fields": "unsubscribed"},
                           headers=auth(token), timeout=10).json()
    assert [(c["leadId"], c["fields"][0]["newValue"]) for c in changes["result"] if c["fields"]] == [
        (a, "true"), (b, "true"), (a, "false")]

    assert requests.post(f"{base}/_sim/fail-next-export", json={"count": 1}, timeout=10).status_code == 201
    export = {"fields": ["id", "email", "unsubscribed"], "filter": window(WALL_START - timedelta(days=20))}
    session = requests.Session()
    session.headers.update(auth(token))
    def finished(export_id):
        status = session.get(f"{base}{EXPORT}/{export_id}/status.json", timeout=10).json()["result"][0]
        return status if status["status"] in ("Completed", "Failed") else None

    for expected in ("Failed", "Completed"):
        export_id = session.post(f"{base}{EXPORT}/create.json", json=export, timeout=10).json()["result"][0]["exportId"]
        session.post(f"{base}{EXPORT}/{export_id}/enqueue.json", timeout=10)
        status = wait_for(lambda: finished(export_id), what="the export to finish")
        assert status["status"] == expected
    full = session.get(f"{base}{EXPORT}/{export_id}/file.json", timeout=10)
    assert full.headers["Content-Type"].startswith("text/csv")
    assert full.text.splitlines() == ["id,email,unsubscribed", f"{a},a@x.com,false", f"{b},b@x.com,true"]
    part = session.get(f"{base}{EXPORT}/{export_id}/file.json", headers={"Range": "bytes=3-"}, timeout=10)
    assert part.status_code == 206 and part.content == full.content[3:]
    assert [job["status"] for job in requests.get(f"{base}/_sim/exports", timeout=10).json()["exports"]] == [
        "Failed", "Completed"]


# ------------------------------------------------------- export jobs on the wall clock, and lists
def test_timed_export_jobs_run_two_at_a_time_whether_polled_or_not(clock, wall):
    state = SimulatorState(clock=clock, wall_clock=wall, export_job_seconds=30)
    client = create_simulator_app(state).test_client()
    token = get_token(client)
    state.add_lead("a@x.com", created_at=WALL_START - timedelta(days=10))
    jobs = [export_job(client, token, window(WALL_START - timedelta(days=31 * (i + 1)))) for i in range(5)]
    statuses = lambda: [export_call(client, token, j, "status")["result"][0]["status"] for j in jobs]  # noqa: E731
    assert statuses() == ["Processing", "Processing", "Queued", "Queued", "Queued"]
    wall.advance(timedelta(seconds=29))
    assert statuses()[:2] == ["Processing", "Processing"]
    wall.advance(timedelta(seconds=60))  # 89 s, nobody polled in between: the fifth started at 60 s
    assert statuses() == ["Completed", "Completed", "Completed", "Completed", "Processing"]
    first, third = (export_call(client, token, j, "status")["result"][0] for j in (jobs[0], jobs[2]))
    assert first["finishedAt"] == third["startedAt"] == "2026-11-26T10:00:30Z"  # the slot's next job starts at once
    assert export_file(client, token, jobs[0]).status_code == 200


def test_timed_export_queue_holds_ten_jobs_at_most(clock, wall):
    state = SimulatorState(clock=clock, wall_clock=wall, export_job_seconds=30)
    client = create_simulator_app(state).test_client()
    token = get_token(client)
    for i in range(10):
        export_job(client, token, window(WALL_START - timedelta(days=31 * (i + 1))))
    eleventh = create_export(client, token, window(WALL_START - timedelta(days=400)))["result"][0]["exportId"]
    assert error_code(export_call(client, token, eleventh, "enqueue")) == "1029"
    wall.advance(timedelta(seconds=30))  # two finish: two places in the queue
    assert export_call(client, token, eleventh, "enqueue")["result"][0]["status"] == "Queued"


def test_list_filters_export_the_members_and_lists_are_found_by_name(clock, wall):
    state = SimulatorState(clock=clock, wall_clock=wall, export_filters_supported=("createdAt", "smartListId",
                                                                                  "staticListId"))
    client = create_simulator_app(state).test_client()
    token = get_token(client)
    gone = state.add_lead("gone@x.com", unsubscribed=True, created_at=WALL_START - timedelta(days=4000))
    state.add_lead("here@x.com", created_at=WALL_START - timedelta(days=10))
    smart = state.add_smart_list("Unsubscribed people", {"unsubscribed": True})
    static = state.add_static_list("Do not mail", [gone])
    for kind, list_id in (("smartList", smart), ("staticList", static)):
        found = client.get(f"/rest/asset/v1/{kind}/byName.json", query_string={"name": state.lists_named(
            kind, "Unsubscribed people" if kind == "smartList" else "Do not mail")[0]["name"]}, headers=auth(token))
        assert found.get_json()["result"][0]["id"] == list_id
        export_id = export_job(client, token, {f"{kind}Id": list_id})
        poll_until_done(client, token, export_id)
        assert export_file(client, token, export_id).data.decode().splitlines()[1:] == [f"{gone},gone@x.com,true"]
    missing = client.get("/rest/asset/v1/smartList/byName.json", query_string={"name": "nope"}, headers=auth(token))
    assert missing.get_json()["success"] is True and missing.get_json()["result"] == []
    assert error_code(create_export(client, token, {"smartListId": 999})) == "1003"
    assert error_code(create_export(client, token, {"staticListId": smart})) == "1003"  # a smart list's id
