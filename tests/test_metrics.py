"""GET /metrics: what it counts after real checks, the gauges it reads from the database, and who may read it."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client import multiprocess
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import load_progress, outbox_depth, record_salesforce_call
from gateway.store import utcnow
from tests.conftest import ADMIN, ADMIN_KEY, CALLER, CALLER_KEY, free_port, wait_for

JANE, BOB = "jane@example.com", "bob@example.com"


def check_body(*addresses: str, workflow: str = "single_send") -> dict:
    return {"source": "web", "workflow": workflow, "sender": "rep@acme.example",
            "messages": [{"id": "m1", "recipients": [{"email": a, "type": "to"} for a in addresses]}]}


def scrape(client, headers=ADMIN) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return samples(response.get_data(as_text=True))


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(scraped: dict, name: str, **labels) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def marketo(simulator):
    simulator.state.add_lead(JANE, unsubscribed=True)
    simulator.state.add_lead(BOB)
    return simulator


def test_checks_move_counters_by_source_workflow_decision_reason_and_checked_via(make_gate, marketo):
    client = make_gate(marketo, enabled=True).test_client()
    before = scrape(client)
    assert client.post("/v1/checks", json=check_body(JANE, BOB), headers=CALLER).get_json()["results"][0][
        "decision"] == "deny"
    assert client.post("/v1/checks", json=check_body(BOB, workflow="campaign_send"), headers=CALLER).status_code == 200
    assert client.post("/v1/checks", json=check_body(BOB, "not-an-address"), headers=CALLER).status_code == 200
    after = scrape(client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("gateway_checks_total", source="web", workflow="single_send", decision="deny") == 2
    assert moved("gateway_checks_total", source="web", workflow="campaign_send", decision="allow") == 1
    addresses = dict(source="web", workflow="single_send")
    assert moved("gateway_checked_addresses_total", **addresses, decision="deny", reason="unsubscribed",
                 checked_via="live") == 1
    assert moved("gateway_checked_addresses_total", **addresses, decision="allow", reason="allowed",
                 checked_via="live") == 1
    assert moved("gateway_checked_addresses_total", **addresses, decision="allow", reason="allowed",
                 checked_via="cache") == 1  # bob again, within the cache's TTL
    assert moved("gateway_checked_addresses_total", **addresses, decision="deny", reason="invalid_address",
                 checked_via="validation") == 1
    assert moved("gateway_check_duration_seconds_count", source="web") == 3
    assert moved("gateway_check_duration_seconds_bucket", source="web", le="+Inf") == 3
    assert moved("gateway_marketo_calls_total", kind="lookup", outcome="ok") >= 1
    assert moved("gateway_marketo_calls_total", kind="token", outcome="ok") >= 1
    assert value(after, "gateway_marketo_calls_today", kind="lookup") >= 1  # read from the database


def test_a_disabled_check_is_counted_as_such_and_shows_as_enabled_0(make_gate, store):
    client = make_gate().test_client()
    before = scrape(client)
    assert value(before, "gateway_check_enabled") == 0
    client.post("/v1/checks", json=check_body(BOB), headers=CALLER)
    after = scrape(client)
    labels = dict(source="web", workflow="single_send", decision="allow", reason="check_disabled", checked_via="setting")
    assert value(after, "gateway_checked_addresses_total", **labels) - value(
        before, "gateway_checked_addresses_total", **labels) == 1
    store.settings.update({"marketo_check_enabled": True}, updated_by="test")
    assert value(scrape(client), "gateway_check_enabled") == 1


def test_gauges_are_read_from_the_database_at_scrape(make_gate, store):
    client = make_gate(marketo_daily_budget=100).test_client()
    scraped = scrape(client)
    assert value(scraped, "gateway_marketo_budget_daily") == 100
    assert value(scraped, "gateway_marketo_budget_remaining") == 100
    assert value(scraped, "gateway_mirror_size") == 0
    assert value(scraped, "gateway_mirror_load_progress_ratio") == 0
    assert value(scraped, "gateway_outbox_depth") == 0
    assert ("gateway_mirror_lag_seconds", frozenset()) not in scraped  # never synced: no lag to show

    owner = "test-worker"
    assert store.sync.acquire_lease(owner, 60)
    started = utcnow()
    store.sync.update(owner, load_status="complete", load_started_at=started, last_success_at=started - timedelta(
        seconds=90))
    store.mirror.apply_changes(owner, unsubscribed=[JANE, "dup@example.com"], state={})
    scraped = scrape(client)
    assert value(scraped, "gateway_mirror_size") == 2
    assert value(scraped, "gateway_mirror_load_progress_ratio") == 1
    assert value(scraped, "gateway_mirror_fresh") == 1
    assert 90 <= value(scraped, "gateway_mirror_lag_seconds") < 600


def test_load_progress_is_the_share_of_the_load_done(store):
    status = store.sync.status()
    start = utcnow() - timedelta(minutes=5)
    windows = [{"start": f"2026-0{m}-01T00:00:00+00:00", "end": f"2026-0{m + 1}-01T00:00:00+00:00", "export_id": None,
                "rows": None} for m in range(1, 5)]
    windows[0].update(export_id="e1", rows=40)
    loading = type(status)(**{**status.__dict__, "load_status": "loading", "load_started_at": start,
                              "load_plan": windows, "load_source": "createdAt windows"})
    assert load_progress(loading, utcnow()) == pytest.approx(0.25)  # one window of four
    walking = type(status)(**{**status.__dict__, "load_status": "loading", "load_started_at": start,
                              "load_plan": [{**windows[0], "max_id": 3000}, {
                                  "ids_to": 3000, "next_id": 1501, "export_id": None, "empty_batches": 0, "read": 1400,
                                  "rows": None}], "load_source": "lead ids"})
    # 1 export job + 5 of (10 batches + 3 past the newest id)
    assert load_progress(walking, utcnow()) == pytest.approx(6 / 14)
    assert load_progress(status, utcnow()) == 0.0  # not started


def test_outbox_depth_reads_the_outbox_when_there_is_one(store):
    class Outbox:
        def depth(self):
            return 7

    assert outbox_depth(store) == 0
    store.outbox = Outbox()
    assert outbox_depth(store) == 7


def test_salesforce_calls_and_marketo_failures_are_counted(make_gate, marketo, caplog):
    client = make_gate(marketo, enabled=True, marketo_daily_budget=0).test_client()  # every lookup refused
    before = scrape(client)
    record_salesforce_call("create", "ok")
    with caplog.at_level(logging.WARNING, logger="gateway.events"):
        answer = client.post("/v1/checks", json=check_body(BOB), headers=CALLER).get_json()
    assert answer["results"][0]["recipients"][0]["checked_via"] == "policy"
    after = scrape(client)
    assert value(after, "gateway_salesforce_calls_total", kind="create", outcome="ok") - value(
        before, "gateway_salesforce_calls_total", kind="create", outcome="ok") == 1
    assert value(after, "gateway_marketo_calls_total", kind="lookup", outcome="budget_spent") - value(
        before, "gateway_marketo_calls_total", kind="lookup", outcome="budget_spent") == 1
    errors = [r for r in caplog.records if getattr(r, "event", None) == "marketo.error"]
    assert errors and errors[0].fields["outcome"] == "budget_spent" and errors[0].fields["kind"] == "lookup"


def test_rate_limit_rejections_are_counted(make_gate):
    client = make_gate(rate_limit="2 per minute").test_client()
    before = scrape(client)  # the admin key's first request
    assert client.post("/v1/checks", json=check_body(BOB), headers=CALLER).status_code == 200
    assert client.post("/v1/checks", json=check_body(BOB), headers=CALLER).status_code == 200
    assert client.post("/v1/checks", json=check_body(BOB), headers=CALLER).status_code == 429
    after = scrape(client)
    assert value(after, "gateway_rate_limited_requests_total") - value(before, "gateway_rate_limited_requests_total") == 1


def test_metrics_need_an_admin_key_or_the_metrics_token(make_gate):
    client = make_gate(metrics_token="scrape-token-123").test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.get_json()["error"]["code"] == "unauthorized"
        assert "gateway_" not in response.get_data(as_text=True)
    refused = client.get("/metrics", headers=CALLER)
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"
    scraped = scrape(client, {"Authorization": "Bearer scrape-token-123"})
    assert ("gateway_check_enabled", frozenset()) in scraped
    assert ("gateway_check_enabled", frozenset()) in scrape(client, ADMIN)


def test_without_a_metrics_token_no_token_gets_in(make_gate):
    client = make_gate().test_client()  # GATEWAY_METRICS_TOKEN unset
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer None"}).status_code == 401


def test_status_says_whether_the_check_is_enabled(make_gate, store):
    client = make_gate().test_client()
    assert client.get("/v1/admin/status", headers=ADMIN).get_json()["enabled"] is False
    store.settings.update({"marketo_check_enabled": True}, updated_by="test")
    assert client.get("/v1/admin/status", headers=ADMIN).get_json()["enabled"] is True


# Under a real gunicorn with two workers --------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
CHECKS_SENT = 120  # at most; the test stops once both workers answered some


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:  # not listening yet, or still booting
        return False


@contextmanager
def gunicorn_gate(engine, tmp_path):
    """gunicorn app:app with gunicorn.conf.py and two workers, on the test database, logging JSON lines.

    Yields the base URL, the metrics directory and a dict that holds gunicorn's stdout and stderr once it stopped.
    """
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_99999999.db").write_bytes(b"left over from an earlier run")
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MARKETO_", "GATEWAY_", "PROMETHEUS_", "SECRET_KEY", "DATABASE_URL", "REDIS_URL",
                                  "LOG_FORMAT", "WEB_CONCURRENCY", "PORT"))}
    env.update(PORT=str(port), WEB_CONCURRENCY="2", GUNICORN_THREADS="1", DATABASE_URL=engine.url.render_as_string(hide_password=False),
               SECRET_KEY="test", LOG_FORMAT="json", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
               GATEWAY_API_KEYS=f"test-caller:caller:{CALLER_KEY},test-admin:admin:{ADMIN_KEY}",
               GATEWAY_METRICS_TOKEN="scrape-token", GATEWAY_RATE_LIMIT="off")
    # Sync workers (one thread) take one request at a time, so concurrent checks reach both (a gthread worker may
    # take them all); the metrics files and their sum work the same for either kind of worker.
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
                                "--worker-class", "sync", "app:app"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    output: dict[str, str] = {}
    try:
        wait_for(lambda: answers(f"{base}/healthz") or process.poll() is not None, 30, "gunicorn to answer")
        assert process.poll() is None, process.communicate()
        yield base, metrics_dir, output
    finally:
        process.send_signal(signal.SIGTERM)
        output["stdout"], output["stderr"] = process.communicate(timeout=30)


def samples_of(families) -> dict[tuple[str, frozenset], float]:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in families for sample in family.samples}


def test_two_gunicorn_workers_add_up_in_one_scrape_and_log_json_without_allowed_addresses(engine, store, tmp_path):
    allowed = [f"allowed-person-{n}@example.com" for n in range(CHECKS_SENT)]
    labels = dict(source="web", workflow="single_send", decision="deny")
    with gunicorn_gate(engine, tmp_path) as (base, metrics_dir, output):
        assert not (metrics_dir / "counter_99999999.db").exists(), "gunicorn.conf.py empties the directory at start"

        def send(address: str) -> int:
            body = check_body(address, "not-an-address")  # the check is off: the invalid address is the one denial
            return requests.post(f"{base}/v1/checks", json=body, headers={**CALLER, "Connection": "close"},
                                 timeout=10).status_code

        def checks_per_worker() -> dict[str, float]:
            """Each worker writes its own file (counter_<pid>.db) once it counted something."""
            counted = {}
            for path in metrics_dir.glob("counter_*.db"):
                merged = samples_of(multiprocess.MultiProcessCollector.merge([str(path)], accumulate=False))
                counted[path.name] = value(merged, "gateway_checks_total", **labels)
            return counted

        sent = 0
        with ThreadPoolExecutor(max_workers=6) as pool:
            # Until both workers answered checks (the second may still be booting when the first answers).
            while sent < len(allowed) and len([n for n in checks_per_worker().values() if n]) < 2:
                batch = allowed[sent:sent + 12]
                assert set(pool.map(send, batch)) == {200}
                sent += len(batch)
        per_worker = checks_per_worker()
        assert len([n for n in per_worker.values() if n]) == 2, f"both workers answered checks: {per_worker}"
        assert sum(per_worker.values()) == sent
        for _ in range(6):  # whichever worker answers the scrape, it shows both workers' counts
            response = requests.get(f"{base}/metrics", timeout=10,
                                    headers={"Authorization": "Bearer scrape-token", "Connection": "close"})
            assert response.status_code == 200
            scraped = samples(response.text)
            assert value(scraped, "gateway_checks_total", **labels) == sent
            assert value(scraped, "gateway_check_duration_seconds_count", source="web") == sent
            assert value(scraped, "gateway_check_enabled") == 0
        assert requests.get(f"{base}/metrics", timeout=10).status_code == 401

    logged = output["stderr"] + output["stdout"]
    for address in allowed:
        assert address not in logged
    events = [json.loads(line) for line in output["stderr"].splitlines() if line.startswith("{")]
    assert all(set(line) == {"ts", "level", "event", "fields"} for line in events)
    denied = [line for line in events if line["event"] == "check.denied"]
    assert len(denied) == sent
    assert denied[0]["level"] == "info" and denied[0]["fields"]["recipients"] == ["***"]
    assert denied[0]["fields"]["reasons"] == ["invalid_address"] and denied[0]["fields"]["source"] == "web"
    # The check starts off: each web worker says so, with what to do about it.
    warnings = [line for line in events if line["event"] == "switch.off"]
    assert len(warnings) >= 2 and all(line["level"] == "warning" for line in warnings)
    assert {line["fields"]["process"] for line in warnings} == {"web"}
    assert "PATCH /v1/admin/settings" in warnings[0]["fields"]["message"]
