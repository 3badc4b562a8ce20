"""Opt-out write-back: the unsubscribes the mirror learns (full load and change stream) set HasOptedOutOfEmail
on matching Contacts and unconverted Leads within one round of the worker; the gate never sets it back."""
from __future__ import annotations

import threading
from datetime import timedelta

from gateway.salesforce.outbox import drain_outbox
from gateway.store import utcnow
from gateway.store.outbox import OPT_OUT
from gateway.worker import mirror_sync_for
from tests.salesforce_support import org, salesforce_settings  # noqa: F401

NOW = utcnow()


def worker_round(app):
    """What one loop of the worker does for Salesforce: a sync, then the outbox."""
    gate = app.extensions["gate"]
    report = mirror_sync_for(gate, threading.Event(), owner="worker-test").run_once()
    assert report.error is None, report.error
    return drain_outbox(gate, backoff_base=0.05, backoff_cap=0.2)


def opted_out(org, sobject) -> dict[str, bool]:
    return {r["Email"]: r["HasOptedOutOfEmail"] for r in org.state.list(sobject)}


def test_unsubscribes_from_the_load_and_the_stream_mark_contacts_and_leads_and_never_unmark(
        make_gate, simulator, org):
    marketo = simulator.state
    marketo.add_lead("ann@example.com", unsubscribed=True, created_at=NOW - timedelta(days=3))
    marketo.add_lead("ben@example.com", unsubscribed=False, created_at=NOW - timedelta(days=3))
    marketo.add_lead("cy@example.com", unsubscribed=True, created_at=NOW - timedelta(days=3))
    org.state.add("Contact", {"LastName": "Ann", "Email": "Ann@Example.com"})
    org.state.add("Lead", {"LastName": "Ann", "Email": "ann@example.com"})
    org.state.add("Contact", {"LastName": "Ben", "Email": "ben@example.com"})
    org.state.add("Lead", {"LastName": "Cy", "Email": "cy@example.com", "IsConverted": True})
    app = make_gate(simulator, enabled=True, salesforce_opt_out_writeback=True, export_poll_seconds=0.01,
                    mirror_load_from=NOW - timedelta(days=10), **salesforce_settings(org))

    report = worker_round(app)  # the full load
    assert report.error is None and report.opted_out == 2
    assert opted_out(org, "Contact") == {"Ann@Example.com": True, "ben@example.com": False}
    assert opted_out(org, "Lead") == {"ann@example.com": True, "cy@example.com": False}  # converted: left alone
    patches = org.state.calls["update"]

    marketo.unsubscribe("ben@example.com")
    assert worker_round(app).opted_out == 1  # the change stream, within the same round
    assert opted_out(org, "Contact")["ben@example.com"] is True
    assert org.state.calls["update"] == patches + 1

    marketo.resubscribe("ben@example.com")
    worker_round(app)
    assert opted_out(org, "Contact")["ben@example.com"] is True  # never set back to false
    store = app.extensions["gate"].store
    assert store.outbox.summary().pending == 0


def test_the_write_back_is_off_by_default(make_gate, simulator, org):
    simulator.state.add_lead("ann@example.com", unsubscribed=True, created_at=NOW - timedelta(days=3))
    org.state.add("Contact", {"LastName": "Ann", "Email": "ann@example.com"})
    app = make_gate(simulator, enabled=True, export_poll_seconds=0.01, mirror_load_from=NOW - timedelta(days=10),
                    **salesforce_settings(org))
    worker_round(app)
    assert app.extensions["gate"].store.outbox.entries(kind=OPT_OUT) == []
    assert opted_out(org, "Contact") == {"ann@example.com": False}
    assert org.state.calls["update"] == 0


def test_many_unsubscribes_are_written_in_patches_of_at_most_200(make_gate, simulator, org):
    emails = [f"u{i}@example.com" for i in range(450)]
    simulator.state.add_leads([{"email": e, "unsubscribed": True} for e in emails])
    for email in emails:
        org.state.add("Contact", {"LastName": "U", "Email": email})
    app = make_gate(simulator, enabled=True, salesforce_opt_out_writeback=True, export_poll_seconds=0.01,
                    mirror_load_from=NOW - timedelta(days=10), **salesforce_settings(org))
    assert worker_round(app).opted_out == 450
    assert org.state.calls["update"] == 3 and org.state.calls["update_records"] == 450
    assert all(opted_out(org, "Contact").values())
