"""Benchmark of the mirror's full load, and of unsubscribe → deny right after it, with the Marketo simulator.

    .venv/bin/python bench/bench_load.py [--scale 20] [--years 20] [--job-seconds 30] [--leads 20000]

For each mode, a fresh SQLite database, the gate under gunicorn and a `gateway worker` process, against a
simulator holding `--leads` leads created over `--years` years (5% unsubscribed) whose Bulk Lead Extract jobs
take `--job-seconds` each, two processing at a time and ten queued at most, as Marketo's:

1. auto: no list named, GATEWAY_MIRROR_LOAD at its default: the newest windows first, then (here) every lead
   by id, 300 a call, at the gate's real pace;
2. list: `GATEWAY_MIRROR_SMART_LIST` names (by name) a smart list "Unsubscribed is true": one job;
3. windows: no list named, GATEWAY_MIRROR_LOAD=windows: one export job per 31-day `createdAt` window.

Time is scaled, and the figures scaled back: the simulator's job duration and the gate's
`GATEWAY_EXPORT_POLL_SECONDS` (Adobe's 60 s) are both divided by `--scale`, and the time the load spends on
export jobs is multiplied by it, from the moment the worker has planned the load (the worker's start before
that, a Python process booting, is counted unscaled). Everything else in that time (HTTP calls, CSV
downloads, database writes) is multiplied too, so the scaled-up figure errs long. The walk by lead ids is
not scaled: it runs at its real pace, and is counted as measured.

Then, right after the load (the moment the status says the mirror answers), `--probes` leads are unsubscribed
in the simulator at moments spread over `--probe-span` seconds, and the gate is asked every 100 ms until it
denies each. This part runs in real time, unscaled: `GATEWAY_SYNC_INTERVAL` is the default 30 s and the
budget the default 2,500 calls a day.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_checks import (  # noqa: E402  (after the path is set)
    BENCH,
    BenchError,
    Processes,
    base_env,
    call,
    gate_environment,
    migrate,
    percentile,
    run_benchmark,
    run_meta,
    start_server,
    turn_check_on,
    wait_ready,
    free_port,
)
from bench_mirror import admin_status, check_one  # noqa: E402

LIST_NAME = "Unsubscribed (for the gate)"
PROBE = "fresh-probe{}@example.com"
MARKETO_POLL_SECONDS = 60.0  # Adobe: poll an export job's status at most once a minute
PROCESSING_SLOTS = 2


def start_timed_simulator(procs: Processes, env: dict, job_seconds: float) -> int:
    port = free_port()
    sim = procs.start("simulator", [
        sys.executable, "-m", "gateway.simulators.marketo", "--host", "127.0.0.1", "--port", port, "--quiet",
        "--rate-limit-calls", 1_000_000, "--rate-limit-window", 20, "--daily-quota", 100_000_000,
        "--export-job-seconds", job_seconds, "--export-filters", "createdAt,smartListId,staticListId",
    ], env=env)
    wait_ready("simulator", port, "/_sim/stats", sim, procs)
    return port


def seed_history(sim_port: int, leads: int, years: int, probes: int, seed: int) -> dict:
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    span = timedelta(days=365.25 * years)
    people = [{"email": f"history{i}@example.com", "unsubscribed": i % 20 == 0,
               "createdAt": (now - span + span * (i + rng.random()) / leads - timedelta(hours=1)).isoformat()}
              for i in range(leads)]
    people += [{"email": PROBE.format(i), "unsubscribed": False,
                "createdAt": (now - timedelta(days=rng.uniform(1, 365))).isoformat()} for i in range(probes)]
    for start in range(0, len(people), 5_000):
        status, body = call(sim_port, "POST", "/_sim/leads", {"leads": people[start:start + 5_000]}, timeout=120)
        if status != 201:
            raise BenchError(f"seeding leads failed: HTTP {status}: {body}")
    status, body = call(sim_port, "POST", "/_sim/lists",
                        {"kind": "smartList", "name": LIST_NAME, "rule": {"unsubscribed": True}})
    if status != 201:
        raise BenchError(f"creating the smart list failed: HTTP {status}: {body}")
    return {"leads": len(people), "unsubscribed": sum(p["unsubscribed"] for p in people),
            "oldest": people[0]["createdAt"], "smart_list_id": body["id"]}


def run_mode(args, procs: Processes, env: dict, sim_port: int, tmp: Path, mode: str) -> dict:
    db_url = f"sqlite:///{tmp / f'{mode}.sqlite3'}"
    gate_env = {
        **gate_environment(env, db_url, sim_port),
        "GATEWAY_MARKETO_DAILY_BUDGET": "2500",  # the default: the load must fit in the sync's share
        "GATEWAY_SYNC_INTERVAL": "30",
        "GATEWAY_EXPORT_POLL_SECONDS": f"{MARKETO_POLL_SECONDS / args.scale:g}",
        "GATEWAY_MIRROR_LOAD_FROM": (datetime.now(timezone.utc) - timedelta(days=365.25 * args.years + 1)).isoformat(),
    }
    if mode == "list":
        gate_env["GATEWAY_MIRROR_SMART_LIST"] = LIST_NAME
    else:
        gate_env["GATEWAY_MIRROR_LOAD"] = mode  # "auto" (the default) or "windows"
    migrate(gate_env, db_url, procs.log_dir)
    gate, gate_port, _ = start_server(procs, f"gate-{mode}", "app:app", gate_env)
    turn_check_on(gate_port)
    before = call(sim_port, "GET", "/_sim/stats")[1]
    started = time.monotonic()
    worker = procs.start(f"worker-{mode}", [sys.executable, "-m", "gateway.cli", "worker"], env=gate_env)
    samples = []
    planned_s = walk_from_s = None
    while True:
        mirror = admin_status(gate_port)["mirror"]
        elapsed = time.monotonic() - started
        progress = mirror.get("load_progress")
        if progress and planned_s is None:
            planned_s = elapsed
        if progress and progress["source"] == "lead ids" and walk_from_s is None:
            walk_from_s = elapsed
        if progress and (not samples or samples[-1]["jobs_done"] != progress["jobs_done"]):
            samples.append({"at_s": round(elapsed, 1), "jobs_done": progress["jobs_done"],
                            "eta_s": progress["eta_seconds"]})
        if mirror["mode"] == "mirror":
            break
        if worker.poll() is not None:
            raise BenchError(f"gateway worker exited with {worker.returncode}:\n{procs.tail(f'worker-{mode}')}")
        if elapsed > args.timeout:
            raise BenchError(f"the {mode} load was not done in {args.timeout} s: {mirror}")
        time.sleep(0.25)  # polling the status, bounded by the timeout
    ready_s = time.monotonic() - started
    planned_s = min(planned_s if planned_s is not None else ready_s, ready_s)
    # Export jobs' time is scaled; the walk by ids runs at its real pace (calls a second), so it is counted as is.
    exports_end_s = walk_from_s if walk_from_s is not None else ready_s
    ready_scaled_s = planned_s + (exports_end_s - planned_s) * args.scale + (ready_s - exports_end_s)
    after = call(sim_port, "GET", "/_sim/stats")[1]
    status = admin_status(gate_port)
    load_calls = status["marketo_calls_today"]["sync"]
    progress = status["mirror"]["load_progress"]
    print(f"{mode}: mirror ready after {ready_s:.1f} s (scaled up: {ready_scaled_s / 60:.1f} min), "
          f"{progress['jobs_total']} jobs, {load_calls} sync calls; probing unsubscribe → deny ...", flush=True)
    probes = probe_unsubscribes(args, sim_port, gate_port, mode)
    procs.stop(worker)
    procs.stop(gate)
    jobs = progress["jobs_total"]
    return {
        "mode": mode,
        "way": progress["source"],
        "walk_s": round(ready_s - exports_end_s, 1),
        "ready_s": round(ready_s, 1),
        "worker_start_to_plan_s": round(planned_s, 1),
        "ready_scaled_min": round(ready_scaled_s / 60, 1),
        "jobs": jobs,
        "rows": progress["rows"],
        "mirror_size": status["mirror"]["size"],
        # By windows, no client can beat the processing slots: ⌈jobs / 2⌉ rounds of one job's duration.
        "floor_scaled_min": round(math.ceil(jobs / PROCESSING_SLOTS) * args.job_seconds / 60, 1)
        if progress["source"] != "lead ids" else None,
        "sync_calls_by_ready": load_calls,
        "export_calls": {k: after["calls"].get(k, 0) - before["calls"].get(k, 0)
                         for k in ("export_create", "export_enqueue", "export_status", "export_file")},
        "progress_samples": samples,
        "probes": probes,
    }


def probe_unsubscribes(args, sim_port: int, gate_port: int, mode: str) -> dict:
    rng = random.Random(args.seed)
    slot = args.probe_span / args.probes
    t0 = time.monotonic()
    schedule = [t0 + i * slot + rng.uniform(0, slot) for i in range(args.probes)]
    pending: dict[str, float] = {}
    blocked: list[float] = []
    timed_out = 0
    next_probe = 0
    while next_probe < len(schedule) or pending:
        tick = time.monotonic()
        while next_probe < len(schedule) and tick >= schedule[next_probe]:
            address = PROBE.format(next_probe)
            status, body = call(sim_port, "POST", "/_sim/unsubscribe", {"email": address})
            if status != 200 or body.get("changed") != 1:
                raise BenchError(f"/_sim/unsubscribe {address}: HTTP {status}: {body}")
            pending[address] = time.monotonic()
            next_probe += 1
        for address, at in list(pending.items()):
            decision, _via = check_one(gate_port, address)
            if decision == "deny":
                blocked.append(time.monotonic() - pending.pop(address))
            elif time.monotonic() - at > args.probe_timeout:
                pending.pop(address)
                timed_out += 1
        time.sleep(max(0.0, tick + 0.1 - time.monotonic()))
    blocked.sort()
    # The probes use fresh addresses of their own per mode: seed them once, unsubscribe them once.
    for i in range(args.probes):
        call(sim_port, "POST", "/_sim/resubscribe", {"email": PROBE.format(i)})
    return {"probes": args.probes, "span_s": args.probe_span, "blocked": len(blocked), "timed_out": timed_out,
            "p50_s": round(percentile(blocked, 50), 1) if blocked else None,
            "p99_s": round(percentile(blocked, 99), 1) if blocked else None,
            "max_s": round(blocked[-1], 1) if blocked else None}


def run(args, procs: Processes, tmp: Path) -> dict:
    env = base_env()
    meta = run_meta(args)
    sim_port = start_timed_simulator(procs, env, args.job_seconds / args.scale)
    seeded = seed_history(sim_port, args.leads, args.years, args.probes, args.seed)
    modes = [run_mode(args, procs, env, sim_port, tmp, mode) for mode in args.modes]
    return {"meta": meta, "seeded": seeded, "scale": args.scale, "job_seconds": args.job_seconds,
            "poll_seconds": MARKETO_POLL_SECONDS, "modes": modes}


def table(results: dict) -> str:
    scale = results["scale"]
    lines = [
        f"Full load against the simulator: {results['seeded']['leads']:,} leads over {results['meta']['args']['years']}"
        f" years, {results['job_seconds']:g} s per export job, polls every {results['poll_seconds']:g} s;"
        f" time scaled down ×{scale:g} and scaled back up below.",
        "",
        "| GATEWAY_MIRROR_LOAD (or list) | the load went by | steps (export jobs + batches of ids) | "
        "mirror ready (scaled up) | windows' floor: ⌈jobs/2⌉ × job | sync calls | "
        "unsubscribe → deny right after (real time) p50 / p99 / max |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in results["modes"]:
        p = m["probes"]
        lines.append(
            f"| {m['mode']} | {m['way']} | {m['jobs']} | {m['ready_scaled_min']} min ({m['ready_s']} s measured, "
            f"{m['walk_s']} s of it walking ids) | "
            f"{'–' if m['floor_scaled_min'] is None else str(m['floor_scaled_min']) + ' min'} | {m['sync_calls_by_ready']} | "
            f"{p['p50_s']} / {p['p99_s']} / {p['max_s']} s ({p['blocked']} of {p['probes']} blocked) |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=20.0, help="divide job duration and poll interval by this")
    p.add_argument("--years", type=int, default=20)
    p.add_argument("--job-seconds", type=float, default=30.0, help="one export job's processing time, unscaled")
    p.add_argument("--leads", type=int, default=20_000)
    p.add_argument("--modes", nargs="+", default=["auto", "list", "windows"], choices=["auto", "windows", "list"],
                   help="auto: no list, GATEWAY_MIRROR_LOAD=auto (the default); windows: no list, forced to windows; "
                        "list: a smart list named")
    p.add_argument("--probes", type=int, default=20)
    p.add_argument("--probe-span", type=float, default=60.0, help="seconds over which the probes unsubscribe")
    p.add_argument("--probe-timeout", type=float, default=180.0)
    p.add_argument("--timeout", type=float, default=1800.0, help="real seconds to wait for one load")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--output", type=Path, default=BENCH / "results" / "load.json")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_benchmark(args.output, args.output.parent / "logs" / "load", "bench-load-",
                         lambda procs, tmp: run(args, procs, tmp), table)


if __name__ == "__main__":
    sys.exit(main())
