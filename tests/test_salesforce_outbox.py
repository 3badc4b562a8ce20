"""Blocked sends become Tasks in Salesforce through the outbox, end to end: the gate over HTTP, the Marketo
simulator, and the Salesforce simulator over HTTPS with its own CA."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import date

import pytest

from gateway.store import utcnow
from gateway.store.outbox import FAILED, PENDING, SENDING, SENT, SKIPPED, TASK
from tests.conftest import ADMIN, CALLER, mirror_emails, wait_for  # noqa: F401
from tests.salesforce_support import (  # noqa: F401
    REP_USER, drain, drain_until_empty, markers_of, org, salesforce_settings, sf_app,
)

JANE, JOE, LEA, NOBODY, BOB = ("jane@example.com", "joe@example.com", "lea@example.com", "nobody@example.com",
                               "bob@example.com")


@pytest.fixture
def people(simulator, org):
    """Marketo: Jane, Joe, Lea and Nobody unsubscribed, Bob not. Salesforce: Jane a Contact (and a Lead), Lea
    only an unconverted Lead, Joe only a converted Lead, Nobody nowhere."""
    for email in (JANE, JOE, LEA, NOBODY):
        simulator.state.add_lead(email, unsubscribed=True)
    simulator.state.add_lead(BOB, unsubscribed=False)
    ids = {
        "jane_contact": org.state.add("Contact", {"LastName": "Jane", "Email": "Jane@Example.com"}),
        "jane_lead": org.state.add("Lead", {"LastName": "Jane", "Email": JANE}),
        "lea_lead": org.state.add("Lead", {"LastName": "Lea", "Email": LEA}),
        "joe_converted": org.state.add("Lead", {"LastName": "Joe", "Email": JOE, "IsConverted": True}),
    }
    return ids


def salesforce_send(client, records, workflow="single_send", user_id=REP_USER):
    response = client.post("/v1/hooks/salesforce", headers=CALLER,
                           json={"workflow": workflow, "userId": user_id, "records": records})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def status(client) -> dict:
    response = client.get("/v1/admin/status", headers=ADMIN)
    assert response.status_code == 200
    return response.get_json()["salesforce"]


def test_a_blocked_send_becomes_one_completed_task_on_the_contact(sf_app, people, org):
    client = sf_app.test_client()
    answer = salesforce_send(client, [{"Id": "02s000000000001AAA", "ToAddress": f"{JANE}; {BOB}",
                                       "FromAddress": "rita@acme.example"}])
    assert answer["results"][0]["decision"] == "deny"
    assert status(client)["outbox_depth"] == 1
    assert org.state.list("Task") == []  # the answer never waits for Salesforce

    report = drain(sf_app)
    assert report.tasks_created == 1 and report.error is None
    (task,) = org.state.list("Task")
    assert task["Subject"] == "Email not sent: unsubscribed in Marketo"
    assert task["WhoId"] == people["jane_contact"]  # the Contact, not the Lead with the same address
    assert task["OwnerId"] == REP_USER
    assert (task["Status"], task["TaskSubtype"], task["ActivityDate"]) == ("Completed", "Email", date.today().isoformat())
    for text in (answer["check_id"], "rita@acme.example", "salesforce", "single_send", JANE):
        assert text in task["Description"]
    shown = status(client)
    assert (shown["tasks_created"], shown["outbox_depth"], shown["connected"]) == (1, 0, True)

    assert drain(sf_app).tasks_created == 0
    assert len(org.state.list("Task")) == 1


def test_leads_without_a_contact_get_the_task_and_nobody_else_does(sf_app, people, org):
    client = sf_app.test_client()
    records = [{"ToAddress": address} for address in (LEA, JOE, NOBODY)]
    salesforce_send(client, records, workflow="multi_select_send", user_id=None)
    drain(sf_app)
    tasks = org.state.list("Task")
    assert [(t["WhoId"], t.get("OwnerId")) for t in tasks] == [(people["lea_lead"], None)]
    shown = status(client)
    assert (shown["tasks_created"], shown["skipped_no_match"]) == (1, 2)  # Joe's Lead is converted; Nobody is nowhere


def test_a_group_sends_silent_drops_make_no_task_and_are_counted(sf_app, people, org):
    client = sf_app.test_client()
    salesforce_send(client, [{"ToAddress": f"{JANE}; {BOB}"}], workflow="group_send")
    assert status(client)["outbox_depth"] == 0
    drain(sf_app)
    assert org.state.list("Task") == []
    assert status(client)["group_send_drops_not_logged"] == 1


def test_salesforce_down_for_a_while_then_back_creates_each_task_exactly_once(sf_app, people, org):
    client = sf_app.test_client()
    for _ in range(3):
        salesforce_send(client, [{"ToAddress": JANE}, {"ToAddress": LEA}], workflow="multi_select_send")
    org.state.faults.append({"kind": "down", "count": None})
    first = drain(sf_app)
    assert first.error and "SERVER_UNAVAILABLE" in first.error
    shown = status(client)
    assert shown["connected"] is False and "SERVER_UNAVAILABLE" in shown["last_error"]
    assert shown["outbox_depth"] == 6 and shown["retry_at"] is not None
    org.state.faults[0]["count"] = 3  # down for three more calls, then back
    drain_until_empty(sf_app)
    tasks = org.state.list("Task")
    assert len(tasks) == 6 and len(set(markers_of(tasks))) == 6
    assert status(client)["connected"] is True


def test_after_a_temporary_failure_the_drain_waits_until_retry_at(sf_app, people, org):
    salesforce_send(sf_app.test_client(), [{"ToAddress": JANE}])
    org.state.faults.append({"kind": "down", "count": 1})
    assert drain(sf_app, backoff_base=30).error
    calls = dict(org.state.calls)
    assert drain(sf_app, backoff_base=30).waited
    assert dict(org.state.calls) == calls  # nothing was tried


def test_request_limit_exceeded_backs_off_and_retries(sf_app, people, org):
    client = sf_app.test_client()
    salesforce_send(client, [{"ToAddress": JANE}])
    org.state.faults.append({"kind": "request_limit", "count": 2})
    reports = drain_until_empty(sf_app)
    assert any(r.error and "REQUEST_LIMIT_EXCEEDED" in r.error for r in reports)
    assert len(org.state.list("Task")) == 1


def test_a_token_expiring_mid_drain_is_renewed_once_and_nothing_is_lost(sf_app, people, org):
    client = sf_app.test_client()
    addresses = [f"p{i}@example.com" for i in range(450)]
    for address in addresses:
        org.state.add("Contact", {"LastName": "P", "Email": address})
    mirror_holds(sf_app, addresses)
    salesforce_send(client, [{"ToAddress": a} for a in addresses], workflow="multi_select_send")
    org.state.faults.append({"kind": "expire_session", "count": 1, "after": 4})  # inside the second batch
    report = drain(sf_app)
    assert report.error is None and report.tasks_created == 450
    assert org.state.calls["expired"] == 1 and org.state.calls["token"] == 2
    assert len(set(markers_of(org.state.list("Task")))) == 450


def test_a_rejected_record_keeps_salesforces_message_and_is_shown_to_admins(sf_app, people, org):
    client = sf_app.test_client()
    org.state.rejections.append({"field": "WhoId", "value": people["lea_lead"],
                                 "statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                                 "message": "Tasks on this Lead are locked"})
    salesforce_send(client, [{"ToAddress": JANE}, {"ToAddress": LEA}], workflow="multi_select_send")
    report = drain(sf_app)
    assert (report.tasks_created, report.failed) == (1, 1)
    shown = status(client)
    assert shown["failed"] == 1 and shown["outbox_depth"] == 0
    (failure,) = shown["recent_failures"]
    assert failure["recipient"] == LEA
    assert failure["error"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION: Tasks on this Lead are locked (WhoId)"
    assert drain(sf_app).tasks_created == 0  # a refused record is not sent again


def test_a_crash_between_salesforces_answer_and_the_gates_record_creates_no_duplicate(sf_app, people, org,
                                                                                   monkeypatch):
    client = sf_app.test_client()
    salesforce_send(client, [{"ToAddress": JANE}, {"ToAddress": LEA}], workflow="multi_select_send")
    store = sf_app.extensions["gate"].store
    real_finish = store.outbox.finish

    def crash_after_send(attempt_id, *, sent={}, failed={}, skipped=()):
        if sent:
            raise SystemExit("worker killed")  # after Salesforce created the Tasks, before they are recorded
        return real_finish(attempt_id, sent=sent, failed=failed, skipped=skipped)

    monkeypatch.setattr(store.outbox, "finish", crash_after_send)
    with pytest.raises(SystemExit):
        drain(sf_app, claim_seconds=0.6)
    monkeypatch.setattr(store.outbox, "finish", real_finish)
    assert len(org.state.list("Task")) == 2
    assert {e.status for e in store.outbox.entries(kind=TASK)} == {SENDING}

    wait_for(lambda: all(e.claimed_until < utcnow() for e in store.outbox.entries(kind=TASK)), what="the claim to end")
    org.state.faults.append({"kind": "down", "count": 1})  # the reconciling query fails: the rows stay unsettled
    assert drain(sf_app).error
    assert {e.status for e in store.outbox.entries(kind=TASK)} == {SENDING}
    wait_for(lambda: store.salesforce.status().retry_at < utcnow(), what="the back-off to pass")
    report = drain(sf_app)
    assert report.reconciled == 2 and report.tasks_created == 2
    assert len(org.state.list("Task")) == 2
    assert {e.status for e in store.outbox.entries(kind=TASK)} == {SENT}
    assert {e.task_id for e in store.outbox.entries(kind=TASK)} == {t["Id"] for t in org.state.list("Task")}


def test_a_worker_killed_mid_batch_leaves_no_duplicate(sf_app, people, org, engine):
    client = sf_app.test_client()
    addresses = [f"k{i}@example.com" for i in range(250)]
    for address in addresses:
        org.state.add("Contact", {"LastName": "K", "Email": address})
    mirror_holds(sf_app, addresses)
    salesforce_send(client, [{"ToAddress": a} for a in addresses], workflow="multi_select_send")
    org.state.start_holding()  # Salesforce creates the first batch's Tasks, then its answer waits
    config = sf_app.extensions["gate"].config
    script = textwrap.dedent(f"""
        from gateway import build_gate
        from gateway.config import GateConfig
        from gateway.salesforce.outbox import OutboxDrain
        config = GateConfig(**{json.dumps({
            "database_url": config.database_url, "secret_key": "x",
            **salesforce_settings(org)})})
        gate = build_gate(config)
        OutboxDrain(gate.store, gate.salesforce, claim_seconds=3).run()
    """)
    worker = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "REQUESTS_CA_BUNDLE": org.ca_path})
    try:
        assert org.state.held.wait(60), "the worker never reached Salesforce"
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
    finally:
        if worker.poll() is None:
            worker.kill()
        org.state.release_held()
    assert len(org.state.list("Task")) == 200  # the first batch reached Salesforce; its answer did not reach the gate
    store = sf_app.extensions["gate"].store
    assert len(store.outbox.entries(kind=TASK, status=SENDING)) == 200

    wait_for(lambda: not [e for e in store.outbox.entries(kind=TASK, status=SENDING) if e.claimed_until > utcnow()],
             what="the dead worker's claim to end")
    report = drain(sf_app)
    assert (report.reconciled, report.tasks_created) == (200, 250)
    tasks = org.state.list("Task")
    assert len(tasks) == 250 and len(set(markers_of(tasks))) == 250
    assert len(store.outbox.entries(kind=TASK, status=SENT)) == 250


def test_ten_thousand_denied_messages_drain_in_at_most_50_composite_calls(sf_app, org):
    client = sf_app.test_client()
    addresses = [f"m{i}@example.com" for i in range(10_000)]
    for i, address in enumerate(addresses):
        org.state.add("Contact" if i % 4 else "Lead", {"LastName": "M", "Email": address})
    mirror_holds(sf_app, addresses)
    answer = salesforce_send(client, [{"ToAddress": a} for a in addresses], workflow="multi_select_send")
    assert all(result["decision"] == "deny" for result in answer["results"])
    org.state.calls.clear()
    drain_until_empty(sf_app, deadline_seconds=600)
    calls = org.state.calls
    assert calls["create"] <= 50 and calls["create_records"] == 10_000
    assert calls["query"] <= 100  # a Contact query and a Lead query per batch of 200
    assert calls["token"] == 1
    tasks = org.state.list("Task")
    assert len(tasks) == 10_000 and len(set(markers_of(tasks))) == 10_000
    assert status(client)["tasks_created"] == 10_000


def test_without_salesforce_nothing_goes_into_the_outbox_and_status_says_why(make_gate, simulator, people):
    app = make_gate(simulator, enabled=True)
    client = app.test_client()
    salesforce_send(client, [{"ToAddress": JANE}])
    shown = status(client)
    assert shown["configured"] is False and "SALESFORCE_LOGIN_URL" in shown["message"]
    assert shown["outbox_depth"] == 0
    assert app.extensions["gate"].store.outbox.entries() == []


def test_logging_blocked_sends_can_be_turned_off(make_gate, simulator, people, org):
    app = make_gate(simulator, enabled=True, salesforce_log_blocked_sends=False, **salesforce_settings(org))
    salesforce_send(app.test_client(), [{"ToAddress": JANE}])
    assert app.extensions["gate"].store.outbox.entries() == []


# helpers -------------------------------------------------------------------------------------------------

def mirror_holds(app, addresses) -> None:
    store = app.extensions["gate"].store
    store.sync.acquire_lease("test-worker", 60)
    store.mirror.apply_changes("test-worker", unsubscribed=list(addresses),
                               state={"load_status": "complete", "last_success_at": utcnow()})


# The statuses the outbox uses, named here so a rename shows up in this file too.
assert {PENDING, SENDING, SENT, SKIPPED, FAILED} == {"pending", "sending", "sent", "skipped", "failed"}
