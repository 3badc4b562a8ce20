"""Shared by the Salesforce tests: the simulated org over HTTPS, a gate pointed at it, and the outbox drain."""
from __future__ import annotations

import time

import pytest

from gateway.salesforce.outbox import OutboxDrain
from gateway.simulators.salesforce import CLIENT_ID, CLIENT_SECRET, SalesforceSimState, start_salesforce_simulator
from gateway.store import utcnow

REP_USER = "005Hs00000BqT3kIAF"


@pytest.fixture
def org(monkeypatch):
    """The Salesforce simulator over HTTPS; its throwaway CA is the one extra CA requests trusts."""
    running = start_salesforce_simulator(SalesforceSimState())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", running.ca_path)
    running.state.add("User", {"Id": REP_USER, "Name": "Rita Rep", "Email": "rita@acme.example"})
    yield running
    running.stop()


def salesforce_settings(org) -> dict:
    return {"salesforce_login_url": org.base_url, "salesforce_client_id": CLIENT_ID,
            "salesforce_client_secret": CLIENT_SECRET}


@pytest.fixture
def sf_app(make_gate, simulator, org):
    """The gate with the check on, Marketo and Salesforce both simulated."""
    return make_gate(simulator, enabled=True, **salesforce_settings(org))


def drain(app, **options):
    gate = app.extensions["gate"]
    options = {"backoff_base": 0.05, "backoff_cap": 0.2, **options}
    return OutboxDrain(gate.store, gate.salesforce, **options).run()


def drain_until_empty(app, deadline_seconds: float = 60.0, **options):
    """Drain rounds (each waits out the back-off first) until the outbox is empty; the reports of every round."""
    store = app.extensions["gate"].store
    deadline = time.monotonic() + deadline_seconds
    reports = []
    while time.monotonic() < deadline:
        retry_at = store.salesforce.status().retry_at
        if retry_at is not None and retry_at > utcnow():
            time.sleep(min(0.05, (retry_at - utcnow()).total_seconds()))  # waiting out the back-off
            continue
        reports.append(drain(app, **options))
        if store.outbox.summary().pending == 0:
            return reports
    raise AssertionError("the outbox did not empty in time")


def markers_of(tasks) -> list[str]:
    from gateway.salesforce.outbox import MARKER

    return [m for task in tasks for m in MARKER.findall(task.get("Description") or "")]
