"""Faults the gate rides out (issue 11): a failing or slow Marketo (circuit breaker, budget, the caller's
deadline), a frozen or dead Redis (the rate limiter fails open), the database going away under the worker,
and a worker killed mid-sync (a short, renewed lease). Speed is measured in bench/bench_faults.py."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from gateway.api.deadline import parse_request_start
from gateway.api.security import rate_limit_fail_opens
from gateway.marketo.breaker import CLOSED, OPEN, CircuitBreaker
from gateway.marketo.quota import quota_day
from gateway.mirror import MirrorSync
from gateway.store import utcnow
from gateway.worker import Backoff, run_worker
from tests.conftest import CALLER, FakeClock
from tests.fault_servers import own_postgres, own_redis, wait_for  # noqa: F401 (fixtures)

NOW = datetime.now(timezone.utc)
LOAD_FROM = NOW - timedelta(days=20)


def check(client, address, headers=None):
    response = client.post("/v1/hooks/email-client", json={"client": "outlook", "to": [address]},
                           headers={**CALLER, **(headers or {})})
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    return answer["decision"], answer["recipients"][0]["checked_via"]


# --- the pieces ---------------------------------------------------------------------------------------------


def test_the_breaker_opens_after_a_run_of_failures_and_lets_one_probe_through_per_interval():
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=3, probe_seconds=60, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    breaker.record_success()  # an answer in between: the run starts over
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state == OPEN and breaker.opened_total == 1
    assert not breaker.allow()
    clock.now += 60
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one
    breaker.record_failure()
    assert not breaker.allow()
    clock.now += 60
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == CLOSED and breaker.allow() and breaker.allow()


def test_the_breaker_is_the_apps_one_process_opens_it_for_all_one_probes_and_an_answer_closes_it_for_all(store):
    clock = FakeClock()
    web1, web2, worker = (CircuitBreaker(threshold=3, probe_seconds=60, clock=clock, shared=store.circuit)
                          for _ in range(3))
    for _ in range(3):
        assert web1.allow()
        web1.record_failure()
    assert web1.state == OPEN
    clock.advance(1)  # the others read the shared state at most once a second
    assert not web2.allow() and not worker.allow(), "opened by web1 for every process"
    assert worker.is_open and 58 <= worker.seconds_until_probe() <= 60

    clock.advance(60)
    probes = [breaker.allow() for breaker in (web2, worker, web1, web2)]
    assert probes.count(True) == 1, "one probe for the app, whoever asks first"
    web2.record_success()  # Marketo answered web2's probe
    assert not store.circuit.state().is_open
    clock.advance(1)
    assert web1.allow() and worker.allow() and not worker.is_open
    assert store.circuit.state().opened_total == 1 and store.circuit.state().probes_total == 1


def test_while_marketo_fails_the_app_sends_at_most_one_probe_a_minute_however_many_processes_ask(store):
    clock = FakeClock()
    processes = [CircuitBreaker(probe_seconds=60, clock=clock, shared=store.circuit) for _ in range(3)]
    sent = 0
    for second in range(3600):
        clock.advance(1)
        for breaker in processes:  # each process has checks (or a sync) that would call Marketo
            if breaker.allow():
                sent += 1
                breaker.record_failure()
    probes = store.circuit.state().probes_total
    assert probes <= 60, "at most one probe a minute for the whole app"
    assert sent <= probes + 5 * len(processes), "each process's run of failures before it opens; then only probes"


def test_without_the_database_each_process_decides_alone_and_says_so_once(caplog):
    class Unreachable:
        def __getattr__(self, name):
            def fail(*args):
                raise ConnectionError("database away")
            return fail

    clock = FakeClock()
    breaker = CircuitBreaker(threshold=2, probe_seconds=60, clock=clock, shared=Unreachable())
    with caplog.at_level(logging.WARNING, logger="gateway.marketo.breaker"):
        for _ in range(2):
            assert breaker.allow()
            breaker.record_failure()
        assert not breaker.allow()
        clock.advance(61)
        assert breaker.allow(), "its own probe schedule"
        assert not breaker.allow()
    said = [r for r in caplog.records if "shared circuit state" in r.getMessage()]
    assert len(said) == 1 and "ConnectionError" in said[0].getMessage()


def test_the_workers_back_off_doubles_up_to_the_sync_interval_and_starts_over_after_a_success():
    backoff = Backoff(longest=30)
    assert [backoff.next() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    backoff.reset()
    assert backoff.next() == 1


@pytest.mark.parametrize("form", ["ms", "us", "t=", "s"])
def test_x_request_start_is_read_in_its_usual_forms(form):
    moment = 1_795_000_000.25
    raw = {"ms": str(int(moment * 1000)), "us": str(int(moment * 1e6)), "t=": f"t={moment:.3f}", "s": f"{moment}"}[form]
    assert parse_request_start(raw) == pytest.approx(moment, abs=0.001)


@pytest.mark.parametrize("raw", ["", "soon", "t=", "-5", "nan", "inf"])
def test_an_unreadable_x_request_start_is_ignored(raw):
    assert parse_request_start(raw) is None


# --- Marketo failing: breaker, budget, deadline -------------------------------------------------------------


def test_a_failing_marketo_trips_the_breaker_charges_nothing_and_a_probe_brings_live_checks_back(
        make_gate, simulator, store):
    app = make_gate(simulator, enabled=True, marketo_probe_seconds=0.5)
    breaker = app.extensions["gate"].marketo.breaker
    client = app.test_client()
    simulator.state.inject_fault(http_status=503)  # every REST call, until cleared
    answers = [check(client, f"new{i}@example.com") for i in range(20)]
    assert set(answers) == {("deny", "policy")}
    assert breaker.state != CLOSED and breaker.refused_total > 0
    sent = simulator.state.stats()["rest_calls"]
    assert sent <= breaker.threshold + breaker.probes_total  # once open, only probes reach Marketo
    counts = store.calls.counts(quota_day(utcnow()))
    assert counts.used == 0 and counts.lookup == 0, "a 5xx is not charged against the budget"
    assert counts.unanswered == sent

    simulator.state.clear_faults()
    simulator.state.add_lead("back@example.com", unsubscribed=True)
    wait_for(lambda: check(client, "back@example.com") == ("deny", "live"), what="a probe to close the breaker")
    assert breaker.state == CLOSED
    assert check(client, "fresh@example.com") == ("allow", "live")


def test_a_deadline_spent_in_the_platforms_queue_is_answered_by_policy_without_calling_marketo(make_gate, simulator):
    client = make_gate(simulator, enabled=True, check_timeout=3.0).test_client()
    queued_since = f"{int((time.time() - 2.9) * 1000)}"  # Heroku's form: ms since the epoch
    assert check(client, "late@example.com", {"X-Request-Start": queued_since}) == ("deny", "policy")
    assert simulator.state.stats()["rest_calls"] == 0
    implausible = f"{int((time.time() - 3600) * 1000)}"  # an hour in a queue: not a stamp to believe
    assert check(client, "late@example.com", {"X-Request-Start": implausible}) == ("allow", "live")


def test_a_30_minute_outage_at_6_checks_a_second_leaves_the_budget_whole_and_the_mirror_resyncs(
        make_gate, simulator, store):
    """Scaled in time, not in calls: the breaker's clock is injected, so 30 minutes pass in a few seconds."""
    app = make_gate(simulator, enabled=True, mirror_load_from=LOAD_FROM, export_poll_seconds=0.01)
    gate = app.extensions["gate"]
    clock = FakeClock()
    gate.marketo.breaker.clock = clock
    settings, sync = gate.checks.context()
    simulator.state.inject_fault(http_status=503)
    for second in range(30 * 60):
        clock.now += 1
        for n in range(6):
            verdicts = gate.checks.resolve([f"rep{second}-{n}@example.com"], settings, sync, time.monotonic() + 2.75)
            assert verdicts[f"rep{second}-{n}@example.com"].checked_via == "policy"
    sent = simulator.state.stats()["rest_calls"]
    assert sent <= gate.marketo.breaker.threshold + 30, "while Marketo fails, only the probes call it"
    counts = store.calls.counts(quota_day(utcnow()))
    assert counts.used == 0 and counts.unanswered == sent

    simulator.state.clear_faults()  # Marketo is back
    simulator.state.add_lead("old@example.com", unsubscribed=True, created_at=NOW - timedelta(days=3))
    clock.now += gate.config.marketo_probe_seconds
    sync_run = MirrorSync(gate.store, gate.marketo, load_from=LOAD_FROM, export_poll_seconds=0.01, lease_seconds=15)
    report = sync_run.run_once()
    assert report.ran and report.error is None, report.error
    assert check(app.test_client(), "old@example.com") == ("deny", "mirror")
    # The context read before the outage still calls the mirror stale: the address goes to Marketo.
    verdicts = gate.checks.resolve(["someone-new@example.com"], settings, sync, time.monotonic() + 2.75)
    assert verdicts["someone-new@example.com"].checked_via == "live", "new addresses are checked live again"


def test_when_a_web_process_probe_finds_marketo_back_the_worker_resyncs_at_once(make_gate, simulator, store):
    """The worker's own next probe is 5 minutes away; the web's probe, answered, wakes it within seconds."""
    settings = dict(enabled=True, mirror_load_from=LOAD_FROM, export_poll_seconds=0.01, marketo_probe_seconds=300,
                    sync_interval=300)
    worker_gate = make_gate(simulator, **settings).extensions["gate"]
    web = make_gate(simulator, **settings).test_client()
    simulator.state.inject_fault(http_status=503)
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(worker_gate, stop), daemon=True)
    worker.start()
    try:
        wait_for(lambda: store.circuit.state().is_open, what="the worker's failing sync to open the circuit")
        wait_for(lambda: store.sync.status().last_error, what="the worker's round to end, failed")
        assert check(web, "during@example.com") == ("deny", "policy"), "open for the web too, at once"

        simulator.state.clear_faults()
        simulator.state.add_lead("left@example.com", unsubscribed=True, created_at=NOW - timedelta(days=1))
        with store.engine.begin() as connection:  # five minutes pass: the next probe is due
            connection.exec_driver_sql("UPDATE marketo_circuit SET next_probe_at = opened_at")
        back = utcnow()
        wait_for(lambda: check(web, "probe@example.com") == ("allow", "live"), what="the web's probe")
        wait_for(lambda: (s := store.sync.status().last_success_at) and s > back, timeout=10,
                 what="the worker to resync as soon as the circuit closed")
        assert check(web, "left@example.com") == ("deny", "mirror")
    finally:
        stop.set()
        worker.join(timeout=30)


# --- Redis frozen or gone: the limiter fails open -----------------------------------------------------------


@pytest.mark.parametrize("fault", ["frozen", "stopped"])
def test_a_redis_fault_lets_checks_through_never_a_500_logged_once(make_gate, simulator, own_redis, fault, caplog):
    simulator.state.add_lead("jane@example.com", unsubscribed=True)
    app = make_gate(simulator, enabled=True, redis_url=own_redis.url, rate_limit="1000 per minute")
    client = app.test_client()
    assert check(client, "jane@example.com") == ("deny", "live")
    if fault == "frozen":
        own_redis.freeze()
    else:
        own_redis.stop()
    statuses: list[int] = []

    def send():
        for _ in range(3):
            own = app.test_client()
            response = own.post("/v1/hooks/email-client", json={"client": "outlook", "to": ["jane@example.com"]},
                                headers=CALLER)
            statuses.append(response.status_code)
            if response.status_code == 200:
                assert response.get_json()["decision"] == "deny"  # the check ran

    with caplog.at_level(logging.WARNING, logger="gateway.api.security"):
        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    own_redis.thaw()
    assert statuses == [200] * 24
    warnings = [r for r in caplog.records if "rate-limit storage failed" in r.getMessage()]
    if fault == "frozen":  # every request already talking to Redis times out: those are let through
        assert rate_limit_fail_opens(app) >= 1
        assert len(warnings) == 1, "logged once per outage, not once per request"
    else:  # refused at once: the process counts in memory from then on, and only racing requests fail open
        assert len(warnings) <= 1


# --- the worker: database away, killed mid-sync --------------------------------------------------------------


def worker_env(database_url: str, simulator, **extra) -> dict:
    return {
        **os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "test",
        "MARKETO_BASE_URL": simulator.base_url, "MARKETO_CLIENT_ID": simulator.state.client_id,
        "MARKETO_CLIENT_SECRET": simulator.state.client_secret,
        "GATEWAY_MIRROR_LOAD_FROM": LOAD_FROM.isoformat(), "GATEWAY_EXPORT_POLL_SECONDS": "0.05",
        "GATEWAY_SYNC_INTERVAL": "1", "GATEWAY_MARKETO_DAILY_BUDGET": "1000000", **extra,
    }


def start_worker(env: dict, log_path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(log_path, "w"))


def stop_worker(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_worker_survives_a_postgresql_outage_and_syncs_again_when_it_returns(own_postgres, simulator, tmp_path):
    from gateway.store import Store

    simulator.state.add_lead("before@example.com", unsubscribed=True, created_at=NOW - timedelta(days=2))
    store = Store(own_postgres.engine())
    log_path = tmp_path / "worker.log"
    worker = start_worker(worker_env(own_postgres.url, simulator), log_path)
    try:
        wait_for(lambda: store.sync.status().last_success_at is not None, what="the first sync")
        own_postgres.stop()
        wait_for(lambda: "mirror sync failed: OperationalError" in log_path.read_text(), what="a failed round")
        simulator.state.add_lead("during@example.com", unsubscribed=True)
        assert worker.poll() is None, "the worker died of the outage"
        own_postgres.start()
        back = utcnow()
        wait_for(lambda: (s := store.sync.status()).last_success_at and s.last_success_at > back,
                 what="a sync after the database came back")
        assert worker.poll() is None
        wait_for(lambda: "during@example.com" in store.mirror.unsubscribed_among(["during@example.com"]),
                 what="the change made during the outage")
    finally:
        stop_worker(worker)
        store.engine.dispose()


def test_a_killed_worker_is_replaced_within_its_short_lease_and_an_unsubscribe_is_denied(
        make_gate, engine, store, simulator, tmp_path):
    simulator.state.add_lead("jane@example.com", unsubscribed=False, created_at=NOW - timedelta(days=2))
    app = make_gate(simulator, enabled=True)
    env = worker_env(engine.url.render_as_string(hide_password=False), simulator, GATEWAY_SYNC_LEASE_SECONDS="3")
    first = start_worker(env, tmp_path / "first.log")
    second = None
    try:
        wait_for(lambda: store.sync.status().last_success_at is not None, what="the first worker's sync")
        holder = store.sync.status().lease_owner
        second = start_worker(env, tmp_path / "second.log")
        wait_for(lambda: "waiting for the sync lease" in (tmp_path / "second.log").read_text(),
                 what="the second worker to say it waits")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        simulator.state.unsubscribe("jane@example.com")
        wait_for(lambda: store.sync.status().lease_owner not in (None, holder), what="the second worker to take over")
        wait_for(lambda: f"took over the sync lease from {holder}" in (tmp_path / "second.log").read_text(),
                 what="the second worker to say it took over")
        client = app.test_client()
        wait_for(lambda: check(client, "jane@example.com") == ("deny", "mirror"), what="the unsubscribe to be denied")
    finally:
        stop_worker(first)
        if second is not None:
            stop_worker(second)
