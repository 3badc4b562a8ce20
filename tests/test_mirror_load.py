"""The full load against the simulator's timed export jobs: jobs queued at once, lists, progress; and the
incremental sync's pace right after a load."""
import logging
import threading
from datetime import datetime, timedelta

import pytest

from gateway.budget import CallBudget
from gateway.marketo.quota import next_quota_reset, quota_day
from gateway.store import utcnow
from gateway.worker import run_worker
from tests.conftest import ADMIN, CALLER, mirror_emails
from tests.test_mirror import NOW, simulator_truth, syncer, wait_for

JOB_SECONDS = 0.5
POLL_SECONDS = 0.1


@pytest.fixture
def timed(simulator):
    """Leads over 300 days (10 windows); export jobs take JOB_SECONDS each, two at a time, as in Marketo."""
    state = simulator.state
    state.export_job_seconds = JOB_SECONDS
    state.export_filters_supported = frozenset(("createdAt", "smartListId", "staticListId"))
    for i in range(60):
        state.add_lead(f"person{i}@example.com", unsubscribed=(i % 4 == 0), created_at=NOW - timedelta(days=300 - 5 * i))
    return state


def load_gate(make_gate, simulator, **overrides):
    options = dict(enabled=True, mirror_load_from=NOW - timedelta(days=301), export_poll_seconds=POLL_SECONDS,
                   mirror_load_mode="windows")
    return make_gate(simulator, **{**options, **overrides})


def most_jobs_active_at_once(jobs) -> int:
    """Most jobs queued or processing at one moment, from each job's enqueue and finish times."""
    moments = [job.queued_at for job in jobs if job.queued_at] + [job.finished_at for job in jobs if job.finished_at]
    return max(sum(1 for job in jobs if job.queued_at and job.queued_at <= moment
                   and (job.finished_at is None or moment < job.finished_at)) for moment in moments)


def status_of(app):
    return app.test_client().get("/v1/admin/status", headers=ADMIN).get_json()["mirror"]


def test_windows_are_exported_with_several_jobs_queued_at_once(make_gate, simulator, timed, store, caplog):
    app = load_gate(make_gate, simulator)
    with caplog.at_level(logging.INFO, logger="gateway.events"):
        report = syncer(app).run_once()
    assert report.error is None and report.loaded_windows == 10
    assert mirror_emails(store) == simulator_truth(timed)
    jobs = timed.export_history()
    assert len(jobs) == 10 and most_jobs_active_at_once(jobs) > 2  # more than Marketo processes at once
    for job in jobs:  # each job's status polled no more often than asked
        gaps = [(b - a).total_seconds() for a, b in zip(job.polled_at, job.polled_at[1:])]
        assert all(gap >= POLL_SECONDS * 0.9 for gap in gaps), gaps
    progress = status_of(app)["load_progress"]
    assert progress["source"] == "createdAt windows"
    assert (progress["jobs_total"], progress["jobs_done"], progress["jobs_in_flight"]) == (10, 10, 0)
    assert progress["rows"] == 60 and progress["percent"] == 100.0 and progress["eta_seconds"] == 0.0
    events = [r.fields for r in caplog.records if getattr(r, "event", None) == "mirror.load_progress"]
    assert len(events) == 10
    assert (events[-1]["jobs_done"], events[-1]["jobs_total"], events[-1]["rows"]) == (10, 10, 60)
    assert events[-1]["source"] == "createdAt windows" and events[0]["eta_seconds"] is not None


def test_the_load_keeps_no_more_jobs_queued_than_configured(make_gate, simulator, timed, store):
    app = load_gate(make_gate, simulator)
    assert syncer(app, export_jobs=2).run_once().error is None
    assert most_jobs_active_at_once(timed.export_history()) <= 2
    assert mirror_emails(store) == simulator_truth(timed)


def test_a_queue_filled_by_another_integration_only_slows_the_load(make_gate, simulator, timed, store):
    """Marketo's queue is the whole instance's: 1029 on enqueue means wait, not fail."""
    others = [timed.create_export(_spec(NOW - timedelta(days=31 * (i + 20))))["exportId"] for i in range(8)]
    for export_id in others:
        timed.enqueue_export(export_id)
    app = load_gate(make_gate, simulator)
    assert syncer(app).run_once().error is None
    assert mirror_emails(store) == simulator_truth(timed)
    assert most_jobs_active_at_once(timed.export_history()) <= 10


def _spec(start: datetime):
    from gateway.simulators.marketo.exports import ExportSpec

    return ExportSpec(fields=("id",), column_headers=("id",), format="CSV", filter_type="createdAt",
                      start_at=start, end_at=start + timedelta(days=31))


@pytest.mark.parametrize("kind", ["smart", "static"])
def test_a_named_list_is_loaded_with_one_export_job_and_no_windows(make_gate, simulator, timed, store, kind):
    unsubscribed_ids = [lead["id"] for lead in timed.leads() if lead.get("unsubscribed")]
    if kind == "smart":
        list_id = timed.add_smart_list("Unsubscribed — gate", {"unsubscribed": True})
        app = load_gate(make_gate, simulator, mirror_smart_list="Unsubscribed — gate")  # by name
    else:
        list_id = timed.add_static_list("Do not email", unsubscribed_ids)
        app = load_gate(make_gate, simulator, mirror_static_list=str(list_id))  # by id
    gate = app.extensions["gate"]
    sync = syncer(app, smart_list=gate.config.mirror_smart_list, static_list=gate.config.mirror_static_list)
    report = sync.run_once()
    assert report.error is None and report.loaded_windows == 1
    assert mirror_emails(store) == simulator_truth(timed)
    assert len(timed.export_history()) == 1
    progress = status_of(app)["load_progress"]
    assert progress["source"] == f"{kind}List {list_id}"
    assert (progress["jobs_total"], progress["jobs_done"], progress["rows"]) == (1, 1, len(unsubscribed_ids))


def test_a_list_name_marketo_does_not_know_is_a_clear_error(make_gate, simulator, timed, store):
    app = load_gate(make_gate, simulator, mirror_smart_list="No such list")
    report = syncer(app, smart_list="No such list").run_once()
    assert report.error == "Marketo: Marketo has no smartList named 'No such list'"
    assert store.sync.status().last_error == report.error and store.sync.status().load_status == "not_started"
    assert timed.export_history() == []


def test_a_worker_stopped_mid_load_resumes_the_jobs_it_queued(make_gate, simulator, timed, store):
    app = load_gate(make_gate, simulator)
    stop = threading.Event()
    first = syncer(app, owner="worker-a", stop=stop)
    first.full_load.on_progress = lambda progress: stop.set() if progress.jobs_done >= 3 else None
    assert first.run_once().error == "stopped"
    in_flight = [step["export_id"] for step in store.sync.status().load_plan if step["rows"] is None and step["export_id"]]
    assert in_flight and store.sync.status().load_status == "loading"
    assert syncer(app, owner="worker-b").run_once().error is None
    assert mirror_emails(store) == simulator_truth(timed)
    assert len(timed.export_history()) == 10  # the queued jobs were polled again, not created again


def test_the_pause_is_paced_by_an_idle_sync_not_by_the_load_nor_by_a_burst(make_gate, simulator, timed, store):
    """The default budget (2,000 sync calls) and a clock 23 h before the quota reset: one idle sync (one call)
    every 41 s lasts the day. The load's calls, and a sync that found changes (three calls), stretch the pause
    only by what they spent: paced by their own cost, the next sync would be minutes or half an hour away."""
    app = load_gate(make_gate, simulator)
    budget = app.extensions["gate"].budget
    budget.now = lambda: next_quota_reset(utcnow()) - timedelta(hours=23)  # the gate's calls count on that day
    day = 23 * 3600
    assert budget.sync_pause(30) == pytest.approx(day / 2_000)
    assert syncer(app).run_once().error is None  # the load (10 windows) and the first incremental sync
    spent = 2_000 - budget.sync_calls_left()
    assert spent >= 40
    assert budget.sync_pause(30) == pytest.approx(day / (2_000 - spent))  # about 42 s, not 40 times that
    timed.unsubscribe("person1@example.com")
    assert syncer(app).run_once().error is None
    burst = 2_000 - budget.sync_calls_left() - spent
    assert burst >= 3  # the change stream, the changed lead by id, its address by email
    assert budget.sync_pause(30) == pytest.approx(day / (2_000 - spent - burst))
    assert budget.sync_pause(30) < 45


@pytest.mark.parametrize("mode", ["windows", "auto"])
def test_an_unsubscribe_right_after_the_load_is_denied_within_the_interval(make_gate, simulator, timed, store, mode):
    """The worker loads (by windows, or as it chooses: here by ids), then syncs every interval (here 0.3 s) from
    the moment the load ends."""
    timed.export_job_seconds = 0.1  # the queue's shape is not what this test is about
    app = load_gate(make_gate, simulator, sync_interval=0.3, marketo_daily_budget=1_000_000,
                    mirror_load_from=NOW - timedelta(days=3 * 365), mirror_load_mode=mode)
    client = app.test_client()
    gate = app.extensions["gate"]
    gate.budget.now = lambda: next_quota_reset(utcnow()) - timedelta(hours=23)  # a whole quota day ahead
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(gate, stop), daemon=True)
    worker.start()
    try:
        wait_for(lambda: store.sync.status().load_status == "complete", timeout=120, what="the load")
        timed.unsubscribe("person1@example.com")

        def denied():
            answer = client.post("/v1/hooks/email-client", json={"client": "outlook", "to": ["person1@example.com"]},
                                 headers=CALLER).get_json()
            return answer["decision"] == "deny" and answer["recipients"][0]["checked_via"] == "mirror"

        # Paced by the load's ~180 calls the next sync would be ~19 s away; by an incremental sync's, 0.3 s.
        wait_for(denied, timeout=10, what="the unsubscribe to be denied from the mirror")
    finally:
        stop.set()
        worker.join(timeout=30)


@pytest.mark.parametrize("env, message", [
    ({"GATEWAY_MIRROR_SMART_LIST": "A", "GATEWAY_MIRROR_STATIC_LIST": "B"}, "not both"),
    ({"GATEWAY_EXPORT_JOBS": "11"}, "at most 10"),
    ({"GATEWAY_EXPORT_JOBS": "0"}, "positive"),
    ({"GATEWAY_MIRROR_LOAD": "list"}, "one of auto, ids, windows"),
])
def test_load_settings_that_cannot_work_are_refused_at_start(env, message):
    from gateway.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=message):
        load_config({"SECRET_KEY": "x", **env})


def test_load_settings_are_read_from_the_environment():
    from gateway.config import load_config

    config = load_config({"SECRET_KEY": "x", "GATEWAY_EXPORT_JOBS": "4", "GATEWAY_MIRROR_STATIC_LIST": " Do not email "})
    assert (config.export_jobs, config.mirror_static_list, config.mirror_smart_list) == (4, "Do not email", None)
    assert config.mirror_load_mode == "auto"
    assert load_config({"SECRET_KEY": "x", "GATEWAY_MIRROR_LOAD": " Windows "}).mirror_load_mode == "windows"


def test_a_load_begun_before_plans_were_saved_resumes_from_its_window(make_gate, simulator, timed, store):
    """A worker upgraded mid-load finds load_window_start and no plan: it goes on from that window."""
    app = load_gate(make_gate, simulator)
    token = app.extensions["gate"].marketo.paging_token(utcnow() - timedelta(minutes=10))
    assert store.sync.acquire_lease("old-worker", 30)
    store.sync.update("old-worker", load_status="loading", load_started_at=utcnow(), changes_token=token,
                      load_window_start=NOW - timedelta(days=100), load_export_id=None)
    store.sync.release_lease("old-worker")
    assert syncer(app).run_once().error is None
    status = store.sync.status()
    assert status.load_status == "complete" and len(status.load_plan) == 4  # 100 days: four windows, not ten
    assert mirror_emails(store) == {email for email in simulator_truth(timed)
                                    if int(email.removeprefix("person").split("@")[0]) >= 40}


# --- without a list: by lead ids ---------------------------------------------------------------------------

FAST_WALK = 50.0  # calls a second: the walk's pace is not what these tests are about


def walking_syncer(app, **overrides):
    return syncer(app, **{"load_mode": "auto", "walk_calls_per_second": FAST_WALK, **overrides})


def lead_calls(state) -> int:
    return state.stats()["calls"]["leads"]


def test_without_a_list_the_load_reads_leads_by_id_when_that_costs_fewer_calls(make_gate, simulator, timed, store,
                                                                                 caplog):
    app = load_gate(make_gate, simulator)
    with caplog.at_level(logging.INFO, logger="gateway.events"):
        report = walking_syncer(app).run_once()
    assert report.error is None
    assert mirror_emails(store) == simulator_truth(timed)
    # Only the newest windows were exported (at most Marketo's 2 processing slots), not all 10.
    assert 1 <= len(timed.export_history()) <= 2
    # 60 leads, ids 1-60: one batch of 300 ids, then 3 empty batches past the newest.
    assert lead_calls(timed) == 4
    planned = [r.fields for r in caplog.records if getattr(r, "event", None) == "mirror.load_planned"]
    assert len(planned) == 1 and planned[0]["way"] == "lead ids" and planned[0]["newest_lead_id"] == 60
    assert planned[0]["calls_by_ids"] == 4 and planned[0]["calls_by_windows"] >= 8 * 4
    progress = status_of(app)["load_progress"]
    assert progress["source"] == "lead ids" and progress["percent"] == 100.0 and progress["eta_seconds"] == 0
    assert progress["rows"] >= 60 and status_of(app)["load_status"] == "complete"


def test_the_walk_reads_across_deleted_ids_up_to_the_newest_lead(make_gate, simulator, timed, store):
    """Leads 61-4,999 were deleted: 16 empty batches in the middle do not end the walk; the newest lead,
    named by the newest window, does (then 3 more empty batches)."""
    timed.add_lead("newest@example.com", unsubscribed=True, lead_id=5000, created_at=NOW - timedelta(days=1))
    timed.add_lead("after-the-export@example.com", unsubscribed=True, lead_id=5200, created_at=NOW - timedelta(days=40))
    app = load_gate(make_gate, simulator)
    assert walking_syncer(app).run_once().error is None
    assert {"newest@example.com", "after-the-export@example.com"} <= mirror_emails(store)
    assert mirror_emails(store) == simulator_truth(timed)
    assert lead_calls(timed) == 18 + 3  # ids 1-5,400 in 18 batches, and 3 empty past the last lead


def test_the_load_exports_the_windows_when_the_ids_would_cost_more(make_gate, simulator, timed, store, caplog):
    """Leads numbered up to 15,000 (53 calls by id) against 9 windows left (36 calls): the windows go on."""
    timed.add_lead("high@example.com", unsubscribed=True, lead_id=15_000, created_at=NOW - timedelta(days=2))
    app = load_gate(make_gate, simulator)
    with caplog.at_level(logging.INFO, logger="gateway.events"):
        assert walking_syncer(app).run_once().error is None
    assert mirror_emails(store) == simulator_truth(timed)
    assert len(timed.export_history()) == 10 and lead_calls(timed) == 0
    planned = [r.fields for r in caplog.records if getattr(r, "event", None) == "mirror.load_planned"]
    assert [p["way"] for p in planned] == ["createdAt windows"] and planned[0]["calls_by_ids"] == 53
    assert status_of(app)["load_progress"]["source"] == "createdAt windows"


def test_the_load_leaves_half_of_the_days_sync_calls_for_the_sync(make_gate, simulator, timed, store):
    """By ids would be cheaper (4 calls against 36), but 4 is more than half of the 6 the sync has left."""
    app = load_gate(make_gate, simulator)
    assert walking_syncer(app, calls_left=lambda: 6).run_once().error is None
    assert len(timed.export_history()) == 10 and lead_calls(timed) == 0
    assert mirror_emails(store) == simulator_truth(timed)


def test_gateway_mirror_load_ids_walks_even_when_windows_would_be_cheaper(make_gate, simulator, timed, store):
    timed.add_lead("high@example.com", unsubscribed=True, lead_id=15_000, created_at=NOW - timedelta(days=2))
    app = load_gate(make_gate, simulator)
    assert walking_syncer(app, load_mode="ids").run_once().error is None
    assert mirror_emails(store) == simulator_truth(timed)
    assert lead_calls(timed) == 50 + 3 and len(timed.export_history()) <= 2


def test_a_worker_stopped_mid_walk_resumes_at_its_next_id(make_gate, simulator, timed, store):
    for i in range(60, 1500):
        timed.add_lead(f"more{i}@example.com", unsubscribed=(i % 7 == 0), created_at=NOW - timedelta(days=1))
    app = load_gate(make_gate, simulator)
    stop = threading.Event()
    first = walking_syncer(app, owner="worker-a", stop=stop)
    first.full_load.on_progress = lambda progress: None
    first.full_load.walk_calls_per_second = 5.0  # slow enough to be stopped mid-walk

    def stop_mid_walk():
        wait_for(lambda: any(step.get("next_id", 1) > 600 for step in store.sync.status().load_plan or ()),
                 what="the walk to pass id 600")
        stop.set()

    stopper = threading.Thread(target=stop_mid_walk, daemon=True)
    stopper.start()
    assert first.run_once().error == "stopped"
    stopper.join(timeout=10)
    walk = next(step for step in store.sync.status().load_plan if "ids_to" in step)
    assert walk["rows"] is None and 600 < walk["next_id"] <= 1501 and store.sync.status().load_source == "lead ids"
    calls_before = lead_calls(timed)
    assert walking_syncer(app, owner="worker-b").run_once().error is None
    assert mirror_emails(store) == simulator_truth(timed)
    # Resumed at its next id, not from 1: the rest of the 5 batches of ids 1-1,500, and 3 empty past them.
    assert lead_calls(timed) - calls_before == 5 - (walk["next_id"] - 1) // 300 + 3
    assert len(timed.export_history()) <= 2  # and the newest windows were not exported again


def test_a_walk_cut_by_a_marketo_outage_resumes_at_its_next_id_once_marketo_answers(make_gate, simulator, timed,
                                                                                      store):
    for i in range(60, 1500):
        timed.add_lead(f"more{i}@example.com", unsubscribed=(i % 7 == 0), created_at=NOW - timedelta(days=1))
    app = load_gate(make_gate, simulator)
    first = walking_syncer(app, walk_calls_per_second=5.0)  # slow enough for the outage to land mid-walk

    def outage_mid_walk():
        wait_for(lambda: any(step.get("next_id", 1) > 300 for step in store.sync.status().load_plan or ()),
                 what="the walk to pass id 300")
        timed.inject_fault(http_status=503)  # every call, until cleared

    breaker = threading.Thread(target=outage_mid_walk, daemon=True)
    breaker.start()
    report = first.run_once()
    breaker.join(timeout=10)
    assert report.error is not None and report.error.startswith("Marketo")
    walk = next(step for step in store.sync.status().load_plan if "ids_to" in step)
    assert walk["rows"] is None and 300 < walk["next_id"] <= 1501
    assert store.sync.status().load_status == "loading"
    timed.clear_faults()
    assert store.circuit.close()  # as another process's answered probe does: the breaker follows within a second
    calls_before = lead_calls(timed)
    wait_for(lambda: walking_syncer(app).run_once().error is None, what="the load to finish once Marketo answers")
    assert mirror_emails(store) == simulator_truth(timed)
    assert lead_calls(timed) - calls_before == 5 - (walk["next_id"] - 1) // 300 + 3
