"""Marketo pushes, the sync confirms: POST /v1/hooks/marketo over real HTTP, against the Marketo simulator."""
from datetime import datetime, timedelta, timezone

import pytest
import requests

from gateway.marketo.quota import quota_day
from gateway.store import utcnow
from tests.conftest import ADMIN, CALLER, mirror_emails, serving
from tests.test_mirror import syncer, wait_for

NOW = datetime.now(timezone.utc)
PUSH = "/v1/hooks/marketo"


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def marketo_key(store):
    """A key made as `gateway keys create marketo-webhook --source marketo` makes it."""
    return bearer(store.keys.create("marketo-webhook", "caller", sources=("marketo",)).key)


@pytest.fixture
def live(make_gate, simulator):
    """The gate served over real HTTP, the check on, the mirror not loaded (checks would go to Marketo)."""
    app = make_gate(simulator, enabled=True, mirror_load_from=NOW - timedelta(days=30), export_poll_seconds=0.01)
    with serving(app) as base:
        yield app, base
    app.extensions["gate"].pushes.wait_for_confirmations()


def push(base, headers, body):
    return requests.post(base + PUSH, json=body, headers=headers, timeout=5)


def check(base, address, headers=CALLER):
    response = requests.post(base + "/v1/hooks/email-client", headers=headers, timeout=10,
                             json={"client": "outlook", "to": [address]})
    assert response.status_code == 200, response.text
    recipient = response.json()["recipients"][0]
    return recipient["decision"], recipient["checked_via"]


def rest_calls(simulator):
    return simulator.state.stats()["rest_calls"]


def test_a_pushed_unsubscribe_is_denied_from_the_mirror_with_no_marketo_call(live, simulator, marketo_key, store):
    simulator.state.add_lead("jane@example.com", unsubscribed=False)  # Marketo has not caught up in this test
    _, base = live
    calls = rest_calls(simulator)
    response = push(base, marketo_key, {"email": " Jane@Example.COM ", "unsubscribed": "true", "leadId": "1001"})
    assert response.status_code == 200
    assert response.json() == {"applied": True, "confirming": False, "email": "jane@example.com"}
    assert check(base, "jane@example.com") == ("deny", "mirror")
    assert check(base, "Jane Doe <JANE@example.com>") == ("deny", "mirror")
    assert rest_calls(simulator) == calls
    assert mirror_emails(store) == {"jane@example.com"}


def test_another_process_denies_the_pushed_address_too(make_gate, simulator, marketo_key):
    """Two gates on one database, as two web processes: the push reaches one, the check the other."""
    simulator.state.add_lead("bob@example.com", unsubscribed=False)
    receiver = make_gate(simulator, enabled=True)
    checker = make_gate(simulator, enabled=True)
    with serving(receiver) as pushed_to, serving(checker) as checked_at:
        assert check(checked_at, "bob@example.com") == ("allow", "live")  # and now cached in that process
        calls = rest_calls(simulator)
        assert push(pushed_to, marketo_key, {"email": "bob@example.com", "unsubscribed": "yes"}).status_code == 200
        assert wait_for(lambda: check(checked_at, "bob@example.com") == ("deny", "mirror"), timeout=5,
                        what="the other process to deny the pushed address")
        assert rest_calls(simulator) == calls


def test_a_push_in_any_spelling_denies_every_spelling_of_the_address(live, simulator, marketo_key):
    _, base = live
    assert push(base, marketo_key, {"email": "user@xn--bcher-kva.example", "unsubscribed": "1"}).status_code == 200
    calls = rest_calls(simulator)
    assert check(base, "user@bücher.example") == ("deny", "mirror")
    assert rest_calls(simulator) == calls


def test_a_fresh_mirror_answers_for_the_push_between_two_syncs(live, simulator, marketo_key):
    app, base = live
    simulator.state.add_lead("carol@example.com", unsubscribed=False, created_at=NOW - timedelta(days=3))
    assert syncer(app).run_once().error is None
    assert check(base, "carol@example.com") == ("allow", "mirror")
    calls = rest_calls(simulator)
    simulator.state.unsubscribe("carol@example.com")
    assert push(base, marketo_key, {"email": "carol@example.com", "unsubscribed": True}).json()["applied"] is True
    assert check(base, "carol@example.com") == ("deny", "mirror")
    assert rest_calls(simulator) == calls
    assert syncer(app).run_once().error is None  # the sync, the safety net, agrees
    assert check(base, "carol@example.com") == ("deny", "mirror")


@pytest.mark.parametrize("flag", [False, "false", "0", "no"])
def test_a_pushed_resubscribe_is_believed_only_once_marketo_confirms_it(live, simulator, marketo_key, store, flag):
    _, base = live
    simulator.state.add_lead("dave@example.com", unsubscribed=True)
    assert push(base, marketo_key, {"email": "dave@example.com", "unsubscribed": "true"}).status_code == 200
    simulator.state.resubscribe("dave@example.com")
    lookups = simulator.state.stats()["calls"].get("leads", 0)
    answer = push(base, marketo_key, {"email": "dave@example.com", "unsubscribed": flag})
    assert answer.status_code == 200
    assert answer.json() == {"applied": False, "confirming": True, "email": "dave@example.com"}
    wait_for(lambda: "dave@example.com" not in mirror_emails(store), timeout=10, what="the confirmed re-subscribe")
    assert simulator.state.stats()["calls"]["leads"] == lookups + 1  # one lookup confirmed it
    assert store.calls.counts(quota_day(utcnow())).lookup >= 1  # counted against the budget like any live lookup


def test_a_pushed_resubscribe_that_marketo_denies_changes_nothing(live, simulator, marketo_key, store):
    app, base = live
    simulator.state.add_lead("erin@example.com", unsubscribed=True)
    push(base, marketo_key, {"email": "erin@example.com", "unsubscribed": "true"})
    lookups = simulator.state.stats()["calls"].get("leads", 0)
    answer = push(base, marketo_key, {"email": "erin@example.com", "unsubscribed": "false"})
    assert answer.json()["confirming"] is True
    wait_for(lambda: simulator.state.stats()["calls"].get("leads", 0) == lookups + 1, what="the confirming lookup")
    app.extensions["gate"].pushes.wait_for_confirmations()
    assert mirror_emails(store) == {"erin@example.com"}
    assert check(base, "erin@example.com") == ("deny", "mirror")


def test_a_pushed_resubscribe_for_an_address_the_mirror_lacks_asks_nobody(live, simulator, marketo_key, store):
    _, base = live
    calls = rest_calls(simulator)
    answer = push(base, marketo_key, {"email": "frank@example.com", "unsubscribed": "no", "leadId": 7})
    assert answer.status_code == 200
    assert answer.json() == {"applied": False, "confirming": False, "email": "frank@example.com"}
    assert rest_calls(simulator) == calls and mirror_emails(store) == set()


def test_a_sync_that_asked_marketo_before_a_push_does_not_undo_it(live, store):
    """The change stream's answer is older than the push: the pushed row stays until a later sync."""
    looked_up_at = utcnow()
    store.mirror.push_unsubscribe("gina@example.com")
    store.sync.acquire_lease("worker-test", 30)
    store.mirror.apply_changes("worker-test", subscribed=["gina@example.com"], looked_up_at=looked_up_at)
    assert mirror_emails(store) == {"gina@example.com"}
    store.mirror.apply_changes("worker-test", subscribed=["gina@example.com"], looked_up_at=utcnow())
    assert mirror_emails(store) == set()


@pytest.mark.parametrize("email", ["", "   ", None])
def test_a_lead_without_an_email_changes_nothing(live, marketo_key, store, email):
    _, base = live
    answer = push(base, marketo_key, {"email": email, "unsubscribed": "true", "leadId": "1001"})
    assert answer.status_code == 200
    assert answer.json() == {"applied": False, "confirming": False, "email": None}
    assert mirror_emails(store) == set()


@pytest.mark.parametrize("body, field", [
    ({"email": "jane@example.com", "unsubscribed": "maybe"}, "unsubscribed"),
    ({"email": "jane@example.com", "unsubscribed": 1}, "unsubscribed"),
    ({"email": "jane@example.com", "unsubscribed": None}, "unsubscribed"),
    ({"email": "jane@example.com", "unsubscribed": ""}, "unsubscribed"),
    ({"email": "jane@example.com"}, "unsubscribed"),
    ({"unsubscribed": "true"}, "email"),
    ({"email": "not an address", "unsubscribed": "true"}, "email"),
    ({"email": ["jane@example.com"], "unsubscribed": "true"}, "email"),
    ({"email": "jane@example.com", "unsubscribed": "true", "leadId": "12a"}, "leadId"),
    ({"email": "jane@example.com", "unsubscribed": "true", "leadId": -4}, "leadId"),
])
def test_anything_else_is_a_422_that_changes_nothing(live, marketo_key, store, body, field):
    _, base = live
    answer = push(base, marketo_key, body)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "invalid_request" and field in error["fields"]
    assert mirror_emails(store) == set()


def test_a_marketo_key_may_call_only_the_push(live, marketo_key):
    _, base = live
    for path, body in (("/v1/checks", {"workflow": "single_send", "messages": [
                           {"recipients": [{"email": "jane@example.com"}]}]}),
                       ("/v1/hooks/email-client", {"client": "outlook", "to": ["jane@example.com"]}),
                       ("/v1/hooks/salesforce", {"workflow": "single_send", "userId": "005", "records": []})):
        assert requests.post(base + path, json=body, headers=marketo_key, timeout=5).status_code == 403
    assert requests.get(base + "/v1/admin/status", headers=marketo_key, timeout=5).status_code == 403


def test_other_keys_limited_to_a_source_may_not_push_and_no_key_is_a_401(live, store):
    _, base = live
    outlook = bearer(store.keys.create("outlook-addin", "caller", sources=("outlook",)).key)
    body = {"email": "jane@example.com", "unsubscribed": "true"}
    assert push(base, outlook, body).status_code == 403
    assert push(base, {}, body).status_code == 401
    assert push(base, bearer("not-a-key"), body).status_code == 401
    assert mirror_emails(store) == set()
    assert push(base, ADMIN, body).status_code == 200  # an admin key may do what a caller key may


def test_a_check_cannot_claim_to_come_from_marketo(live):
    _, base = live
    response = requests.post(base + "/v1/checks", headers=CALLER, timeout=5, json={
        "source": "marketo", "workflow": "single_send", "messages": [{"recipients": [{"email": "jane@example.com"}]}]})
    assert response.status_code == 422 and "source" in response.json()["error"]["fields"]


def test_the_cli_makes_a_marketo_key_that_pushes_and_refuses_to_make_one_that_must_sign(live, store):
    from click.testing import CliRunner

    from gateway.cli import main

    env = {"DATABASE_URL": store.engine.url.render_as_string(hide_password=False)}
    refused = CliRunner().invoke(main, ["keys", "create", "mk-signed", "--source", "marketo", "--require-signature"],
                                 env=env)
    assert refused.exit_code == 2 and "cannot sign" in refused.output
    made = CliRunner().invoke(main, ["keys", "create", "mk", "--source", "marketo"], env=env)
    assert made.exit_code == 0, made.output
    key = made.output.splitlines()[1]
    _, base = live
    assert push(base, bearer(key), {"email": "jane@example.com", "unsubscribed": "true"}).json()["applied"] is True
