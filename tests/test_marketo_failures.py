"""When Marketo is slow, down, over quota or refuses us: the caller still gets an answer in time."""
import time

import pytest

from tests.conftest import ADMIN, CALLER

ONE = {"client": "outlook", "to": ["someone@example.com"]}


def check(client, body=ONE):
    response = client.post("/v1/hooks/email-client", json=body, headers=CALLER)
    assert response.status_code == 200
    return response.get_json()


@pytest.mark.parametrize("code", ["604", "608", "611", "713", "606", "615"])
def test_marketo_down_for_good_denies_as_unverified_under_the_default_policy(make_gate, simulator, code):
    client = make_gate(simulator, enabled=True, check_timeout=1.0).test_client()
    simulator.state.inject_fault(code)
    answer = check(client)
    assert (answer["decision"], answer["reason_code"]) == ("deny", "unverified")
    assert answer["recipients"][0]["checked_via"] == "policy"
    assert "try again" in answer["reason"]
    entries = client.get("/v1/admin/blocked-sends", headers=ADMIN).get_json()["items"]
    assert [e["reason_code"] for e in entries] == ["unverified"]


@pytest.mark.parametrize("code", ["604", "606", "615"])
def test_a_passing_marketo_error_is_retried_and_the_check_goes_through(make_gate, simulator, code):
    simulator.state.add_lead("someone@example.com", unsubscribed=True)
    client = make_gate(simulator, enabled=True).test_client()
    simulator.state.inject_fault(code, count=2)
    answer = check(client)
    assert answer["reason_code"] == "unsubscribed" and answer["recipients"][0]["checked_via"] == "live"


def test_http_502_from_marketo_is_retried(make_gate, simulator):
    client = make_gate(simulator, enabled=True).test_client()
    simulator.state.inject_fault(http_status=502, count=1)
    answer = check(client)
    assert answer["recipients"][0]["reason_code"] == "not_in_marketo"


def test_allow_policy_lets_unverified_recipients_through(make_gate, simulator):
    client = make_gate(simulator, enabled=True, failure_mode="allow", check_timeout=1.0).test_client()
    simulator.state.inject_fault("611")
    answer = check(client)
    assert (answer["decision"], answer["reason_code"]) == ("allow", "allowed")
    assert answer["recipients"][0]["reason_code"] == "unverified"
    assert answer["recipients"][0]["checked_via"] == "policy"
    assert client.get("/v1/admin/blocked-sends", headers=ADMIN).get_json()["items"] == []


def test_admin_failure_mode_overrides_the_environment_default(make_gate, simulator):
    client = make_gate(simulator, enabled=True, failure_mode="deny", check_timeout=1.0).test_client()
    assert client.patch("/v1/admin/settings", json={"failure_mode": "allow"}, headers=ADMIN).get_json()["failure_mode"] == "allow"
    simulator.state.inject_fault("604")
    assert check(client)["decision"] == "allow"


def test_a_hanging_marketo_never_holds_the_caller_past_the_deadline(make_gate, simulator):
    client = make_gate(simulator, enabled=True, check_timeout=1.0, marketo_request_timeout=60.0).test_client()
    simulator.state.inject_fault(latency=30.0)  # the simulator's teardown cuts the sleep short
    started = time.monotonic()
    answer = check(client)
    waited = time.monotonic() - started
    assert answer["reason_code"] == "unverified"
    # A generous bound, far from the 1 s deadline and far from the 30 s Marketo would have held the caller.
    assert waited < 10, f"caller waited {waited:.2f}s with a 1 s deadline"


def test_daily_quota_reached_stops_all_calls_until_the_reset(make_gate, simulator):
    client = make_gate(simulator, enabled=True).test_client()
    simulator.state.inject_fault("607")
    assert check(client)["reason_code"] == "unverified"
    simulator.state.clear_faults()
    calls = simulator.state.stats()["rest_calls"]
    assert check(client, {"client": "gmail", "to": ["other@example.com"]})["reason_code"] == "unverified"
    assert simulator.state.stats()["rest_calls"] == calls
    status = client.get("/v1/admin/settings", headers=ADMIN).get_json()["marketo"]
    assert status["connected"] is False and "quota" in status["message"]


def test_expired_token_is_renewed_once_and_the_check_goes_through(make_gate, simulator):
    simulator.state.add_lead("someone@example.com", unsubscribed=True)
    client = make_gate(simulator, enabled=True).test_client()
    assert check(client, {"client": "gmail", "to": ["warmup@example.com"]})["decision"] == "allow"
    tokens = simulator.state.stats()["calls"]["token"]
    simulator.state.expire_tokens()
    answer = check(client)
    assert answer["reason_code"] == "unsubscribed"
    assert simulator.state.stats()["calls"]["token"] == tokens + 1


def test_wrong_credentials_deny_as_unverified_and_show_on_the_admin_status(make_gate, simulator):
    client = make_gate(simulator, enabled=True, marketo_client_secret="wrong").test_client()
    assert check(client)["reason_code"] == "unverified"
    status = client.get("/v1/admin/settings", headers=ADMIN).get_json()["marketo"]
    assert status["connected"] is False and "refused" in status["message"]


def test_ten_thousand_recipient_group_send_is_batched_300_at_a_time(make_gate, simulator):
    for i in range(0, 10_000, 7):
        simulator.state.add_lead(f"person{i}@example.com", unsubscribed=(i % 2 == 0))
    client = make_gate(simulator, enabled=True, check_timeout=20.0).test_client()
    recipients = [{"email": f"person{i}@example.com", "type": "bcc"} for i in range(10_000)]
    response = client.post("/v1/checks", json={"workflow": "group_send", "messages": [{"id": "blast", "recipients": recipients}]},
                           headers=CALLER)
    (result,) = response.get_json()["results"]
    unsubscribed = {f"person{i}@example.com" for i in range(0, 10_000, 14)}
    assert set(result["blocked"]) == unsubscribed
    assert len(result["deliver_to"]) == 10_000 - len(unsubscribed)
    assert simulator.state.stats()["calls"]["leads"] == 34  # ceil(10,000 / 300)
