"""The local mirror of Marketo's unsubscribes: full load, change stream, freshness, budget, lease, resume."""
import os
import re
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone

import pytest

from gateway.budget import CallBudget
from gateway.marketo.quota import quota_day
from gateway.mirror import MirrorSync
from gateway.store import utcnow
from tests.conftest import ADMIN, CALLER, mirror_emails, wait_for

NOW = datetime.now(timezone.utc)


def simulator_truth(state) -> set[str]:
    return {lead["email"].lower() for lead in state.leads() if lead.get("unsubscribed")}


@pytest.fixture
def crowd(simulator):
    """Leads spread over 100 days, some unsubscribed, one address on two leads."""
    state = simulator.state
    for i in range(60):
        state.add_lead(f"person{i}@example.com", unsubscribed=(i % 3 == 0), created_at=NOW - timedelta(days=100 - i))
    state.add_lead("Shared@Example.com", unsubscribed=False, created_at=NOW - timedelta(days=90))
    state.add_lead("shared@example.com", unsubscribed=True, created_at=NOW - timedelta(days=5))
    return state


@pytest.fixture
def gate_app(make_gate, simulator):
    """These tests follow the load's windows: GATEWAY_MIRROR_LOAD=windows (test_mirror_load.py has the ids)."""
    return make_gate(simulator, enabled=True, mirror_load_from=NOW - timedelta(days=101), export_poll_seconds=0.01,
                     mirror_load_mode="windows")


def syncer(app, owner="worker-test", **overrides):
    gate = app.extensions["gate"]
    options = dict(load_from=gate.config.mirror_load_from, export_poll_seconds=gate.config.export_poll_seconds,
                   lease_seconds=30, owner=owner, load_mode=gate.config.mirror_load_mode)
    options.update(overrides)
    return MirrorSync(gate.store, gate.marketo, **options)


def check(client, address):
    response = client.post("/v1/hooks/email-client", json={"client": "outlook", "to": [address]}, headers=CALLER)
    assert response.status_code == 200
    answer = response.get_json()
    return answer["decision"], answer["recipients"][0]["checked_via"]


def test_full_load_mirrors_every_unsubscribed_address_across_31_day_windows(gate_app, crowd, store):
    report = syncer(gate_app).run_once()
    assert report.ran and report.error is None
    assert report.loaded_windows == 4  # 101 days in windows of at most 31
    assert mirror_emails(store) == simulator_truth(crowd) | {"shared@example.com"}
    assert store.sync.status().load_status == "complete"
    assert crowd.stats()["calls"]["export_create"] == 4


def test_checks_are_answered_from_a_fresh_mirror_with_no_marketo_call(gate_app, crowd, store):
    syncer(gate_app).run_once()
    client = gate_app.test_client()
    calls = crowd.stats()["rest_calls"]
    for i in range(50):
        decision, via = check(client, f"PERSON{i}@example.com")
        assert via == "mirror"
        assert decision == ("deny" if i % 3 == 0 else "allow")
    assert check(client, "shared@example.com") == ("deny", "mirror")
    assert crowd.stats()["rest_calls"] == calls


def test_a_stale_mirror_falls_back_to_live_lookups(gate_app, crowd, store):
    sync = syncer(gate_app)
    sync.run_once()
    store.sync.acquire_lease("someone-else", 60)
    store.sync.update("someone-else", last_success_at=utcnow() - timedelta(minutes=11))
    assert check(gate_app.test_client(), "person3@example.com") == ("deny", "live")


def test_unsubscribe_blocks_after_one_sync_and_resubscribe_allows_again(gate_app, crowd, store):
    sync = syncer(gate_app)
    sync.run_once()
    client = gate_app.test_client()
    assert check(client, "person1@example.com") == ("allow", "mirror")

    crowd.unsubscribe("person1@example.com")
    sync.run_once()
    assert check(client, "person1@example.com") == ("deny", "mirror")

    crowd.resubscribe("person1@example.com")
    report = sync.run_once()
    assert report.subscribed >= 1
    assert check(client, "person1@example.com") == ("allow", "mirror")
    assert mirror_emails(store) == simulator_truth(crowd) | {"shared@example.com"} - {"person1@example.com"}


def test_a_lead_created_unsubscribed_after_the_load_is_picked_up(gate_app, crowd, store):
    sync = syncer(gate_app)
    sync.run_once()
    crowd.add_lead("latecomer@example.com", unsubscribed=True)
    sync.run_once()
    assert "latecomer@example.com" in mirror_emails(store)


def test_two_workers_never_sync_at_once(gate_app, crowd, store):
    first, second = syncer(gate_app, owner="worker-a"), syncer(gate_app, owner="worker-b")
    crowd.inject_fault(latency=2.0, count=1)  # holds worker-a inside its first Marketo call
    reports = {}
    thread = threading.Thread(target=lambda: reports.setdefault("a", first.run_once()))
    thread.start()
    wait_for(lambda: store.sync.status().lease_owner == "worker-a", what="worker-a to take the lease")
    assert second.run_once().ran is False
    thread.join(timeout=30)
    assert reports["a"].ran
    assert second.run_once().ran is True


def test_daily_budget_is_never_exceeded_and_shows_on_the_status(make_gate, simulator, store):
    app = make_gate(simulator, enabled=True, marketo_daily_budget=25)  # lookups get 5, the sync 20
    client = app.test_client()
    answers = [check(client, f"new{i}@example.com") for i in range(8)]
    assert [via for _, via in answers] == ["live"] * 5 + ["policy"] * 3
    assert simulator.state.stats()["rest_calls"] == 5
    counts = store.calls.counts(quota_day(utcnow()))
    assert (counts.used, counts.lookup) == (5, 5)
    status = client.get("/v1/admin/status", headers=ADMIN).get_json()
    assert status["budget"] == {"daily": 25, "sync_limit": 20, "lookup_limit": 5, "remaining": 20, "exhausted": True}
    assert status["marketo_calls_today"]["lookup"] == 5 and status["marketo_calls_today"]["token"] >= 1


def test_budget_counts_stay_exact_under_concurrent_processes(store):
    budgets = [CallBudget(store, daily_limit=200) for _ in range(4)]  # lookups' share: 40
    granted = []

    def spend(budget):
        for _ in range(20):
            try:
                budget("lookup")
                granted.append(1)
            except Exception:
                pass

    threads = [threading.Thread(target=spend, args=(b,)) for b in budgets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 40
    assert store.calls.counts(quota_day(utcnow())).used == 40


def test_sync_is_paced_so_its_share_of_the_budget_lasts_the_day(store):
    budget = CallBudget(store, daily_limit=2_500)
    pause = budget.sync_pause(interval=30)
    assert pause >= 30
    # 2,000 sync calls spread over the rest of the day: never more often than that allows
    assert pause * 2_000 >= budget_seconds_left() * 0.99


def budget_seconds_left():
    from gateway.budget import seconds_until_reset
    return seconds_until_reset(utcnow())


def test_status_shows_mirror_size_last_sync_and_lag(gate_app, crowd):
    client = gate_app.test_client()
    before = client.get("/v1/admin/status", headers=ADMIN).get_json()["mirror"]
    assert before["mode"] == "live" and before["load_status"] == "not_started"
    syncer(gate_app).run_once()
    after = client.get("/v1/admin/status", headers=ADMIN).get_json()
    assert after["mirror"]["mode"] == "mirror" and after["mirror"]["fresh"] is True
    assert after["mirror"]["size"] == len(simulator_truth(crowd))
    assert after["mirror"]["lag_seconds"] < 60
    assert after["marketo_calls_today"]["sync"] > 0


def test_a_failed_export_is_started_again_on_the_next_run(gate_app, crowd, store):
    crowd.fail_next_export()
    first = syncer(gate_app).run_once()
    assert first.error and store.sync.status().load_status == "loading"
    second = syncer(gate_app).run_once()
    assert second.error is None and store.sync.status().load_status == "complete"
    assert mirror_emails(store) == simulator_truth(crowd)


def test_worker_killed_mid_load_resumes_and_ends_equal_to_marketo(engine, store, simulator, crowd):
    """Two real `gateway worker` processes; the first is killed with SIGKILL in the middle of the load."""
    crowd.export_polls_to_complete = 4
    env = {
        **os.environ,
        "DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "SECRET_KEY": "test",
        "MARKETO_BASE_URL": simulator.base_url,
        "MARKETO_CLIENT_ID": crowd.client_id,
        "MARKETO_CLIENT_SECRET": crowd.client_secret,
        "GATEWAY_MIRROR_LOAD_FROM": (NOW - timedelta(days=101)).isoformat(),
        "GATEWAY_EXPORT_POLL_SECONDS": "0.2",
        "GATEWAY_SYNC_INTERVAL": "0.5",
        "GATEWAY_SYNC_LEASE_SECONDS": "2",
        "GATEWAY_MARKETO_DAILY_BUDGET": "50000",
        "GATEWAY_MIRROR_LOAD": "windows",
    }
    first = subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (s := store.sync.status()).load_window_start and s.load_window_start > NOW - timedelta(days=60)
                 and s.load_status == "loading", what="the first worker to load two windows")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    assert store.sync.status().load_status == "loading"
    crowd.unsubscribe("person2@example.com")  # a change while nobody syncs

    second = subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        truth = simulator_truth(crowd)
        wait_for(lambda: store.sync.status().load_status == "complete" and mirror_emails(store) == truth,
                 timeout=60, what="the second worker to finish the load and match Marketo")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=15)
    # Resumed, not restarted: at most one window was exported twice.
    assert crowd.stats()["calls"]["export_create"] <= 5


def test_worker_once_syncs_and_exits(engine, store, simulator, crowd):
    from click.testing import CliRunner

    from gateway.cli import main

    env = {
        "DATABASE_URL": engine.url.render_as_string(hide_password=False), "SECRET_KEY": "test",
        "MARKETO_BASE_URL": simulator.base_url, "MARKETO_CLIENT_ID": crowd.client_id,
        "MARKETO_CLIENT_SECRET": crowd.client_secret,
        "GATEWAY_MIRROR_LOAD_FROM": (NOW - timedelta(days=101)).isoformat(), "GATEWAY_EXPORT_POLL_SECONDS": "0.01",
    }
    result = CliRunner().invoke(main, ["worker", "--once"], env=env)
    assert result.exit_code == 0, result.output
    assert f"mirror holds {len(simulator_truth(crowd))} unsubscribed addresses" in result.output
    assert store.sync.status().load_status == "complete"


def test_worker_process_logs_its_syncs(engine, store, simulator, crowd):
    env = {
        **os.environ, "DATABASE_URL": engine.url.render_as_string(hide_password=False), "SECRET_KEY": "test",
        "MARKETO_BASE_URL": simulator.base_url, "MARKETO_CLIENT_ID": crowd.client_id,
        "MARKETO_CLIENT_SECRET": crowd.client_secret,
        "GATEWAY_MIRROR_LOAD_FROM": (NOW - timedelta(days=101)).isoformat(), "GATEWAY_EXPORT_POLL_SECONDS": "0.01",
        "GATEWAY_MARKETO_DAILY_BUDGET": "50000",
    }
    worker = subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: store.sync.status().last_success_at is not None, what="the worker's first sync")
    finally:
        worker.send_signal(signal.SIGTERM)
        _, logged = worker.communicate(timeout=15)
    assert "INFO mirror.worker_started owner=worker-" in logged
    # The newest windows name the newest lead (62); reading 62 leads by id costs fewer calls than 2 more windows.
    assert re.search(r'INFO mirror\.load_planned way="lead ids" newest_lead_id=62 calls_by_ids=4 ', logged), logged
    assert re.search(r"INFO mirror\.synced owner=worker-\w+ windows_loaded=2 ", logged), logged
    assert "INFO mirror.worker_stopped" in logged
    # A fresh database: the check is off, and the worker says so as it starts.
    assert re.search(r"WARNING switch\.off enabled=false process=worker message=.*PATCH /v1/admin/settings", logged)
    assert crowd.client_secret not in logged
