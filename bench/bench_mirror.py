"""Benchmark of the gate's mirror of Marketo's unsubscribes, with the Marketo simulator.

    .venv/bin/python bench/bench_mirror.py [--duration 5] [--big 1000000] [--skip-postgres]

Three parts (see bench/README.md, "Benchmark: the mirror", for what each figure means):

1. checks answered from a fresh mirror, against the same gate answering live (cache on; and with a cold
   cache) and against the bare Flask ceiling: alternating rounds of single-recipient email-client checks,
   with the Marketo calls each mode makes;
2. unsubscribe-to-block latency: a `gateway worker` keeps the mirror in sync while addresses are
   unsubscribed in the simulator at moments spread over the sync cycle, and the gate is polled every
   100 ms until it denies each one;
3. a mirror of 1,000,000 unsubscribed addresses (`--big`) against an empty one, on SQLite and PostgreSQL:
   check latency and req/s for addresses in the mirror and not in it, the gate's memory, the database size.

The pieces (processes, load generator, summaries, simulator and gate start-up) come from bench_checks.py.
Every server runs in its own process group and is stopped on exit, Ctrl-C or error; the PostgreSQL
databases this run created are dropped.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_checks, also when imported from elsewhere

from bench_checks import (  # noqa: E402  (after the path is set)
    AUTH,
    BENCH,
    ENDPOINT,
    BenchError,
    run_benchmark,
    Processes,
    base_env,
    call,
    fmt,
    gate_environment,
    migrate,
    percentile,
    person_address,
    process_tree,
    ratio,
    run_load,
    run_meta,
    seed_leads,
    sim_stats,
    start_server,
    start_simulator,
    stats_delta,
    summarize,
    turn_check_on,
)

GATE_APP = "app:app"
BARE_APP = "bench.bare_app:app"
PROBE = "probe{}@example.com"  # leads seeded subscribed, unsubscribed one by one in part 2
COLD_TEMPLATE = '{"client":"outlook","to":["cold-{x}@example.com"]}'  # never seeded, never repeated
BIG_HIT_TEMPLATE = '{"client":"outlook","to":["u{x}@big.example.com"]}'  # in the big mirror
BIG_MISS_TEMPLATE = '{"client":"outlook","to":["m{x}@big.example.com"]}'  # in no mirror
INSERT_CHUNK = 50_000
PART1_TARGETS = ("bare", "mirror", "live", "live-cold")
PG_DB_PREFIX = "bench_mirror"


def big_address(i: int) -> str:
    return f"u{i}@big.example.com"


# ------------------------------------------------------------------ helpers
def admin_status(port: int) -> dict:
    status, body = call(port, "GET", "/v1/admin/status", headers=AUTH)
    if status != 200:
        raise BenchError(f"GET /v1/admin/status answered {status}: {str(body)[:500]}")
    return body


def check_one(port: int, address: str) -> tuple[str, str]:
    """One single-recipient check on a fresh connection: (decision, checked_via)."""
    status, body = call(port, "POST", ENDPOINT, {"client": "outlook", "to": [address]}, headers=AUTH, timeout=10)
    if status != 200:
        raise BenchError(f"check of {address} answered HTTP {status}: {str(body)[:500]}")
    return body["decision"], body["recipients"][0]["checked_via"]


def memory(pid: int) -> dict:
    """Resident memory of a gunicorn master and its workers, from /proc (no psutil needed).

    rss: VmRSS summed (counts pages the forked workers share with the master more than once);
    pss: proportional set size summed (shared pages split between the sharers), when readable;
    hwm: VmHWM summed (each process's peak RSS)."""
    rows = []
    for p in process_tree(pid):
        row = {"pid": p}
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    row[key] = int(value.split()[0]) / 1024
        except OSError:
            continue
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    row["Pss"] = int(line.split()[1]) / 1024
        except OSError:
            pass
        rows.append(row)
    workers = [r for r in rows if r["pid"] != pid]
    return {
        "rss_mb": round(sum(r.get("VmRSS", 0) for r in rows), 1),
        "pss_mb": round(sum(r.get("Pss", 0) for r in rows), 1) if all("Pss" in r for r in rows) else None,
        "hwm_mb": round(sum(r.get("VmHWM", 0) for r in rows), 1),
        "master_rss_mb": round(next((r.get("VmRSS", 0) for r in rows if r["pid"] == pid), 0), 1),
        "workers_rss_mb": [round(r.get("VmRSS", 0), 1) for r in workers],
    }


def median_ms(samples: list[float]) -> float:
    return round(1000 * sorted(samples)[len(samples) // 2], 1)


def per_10k(calls: int, checks: int) -> float | None:
    return round(10_000 * calls / checks, 1) if checks else None


def pooled(rounds: list[dict], runs: list[dict]) -> dict:
    """summarize() of several rounds of one target, with their Marketo calls added up."""
    total = summarize(runs)
    marketo = Counter()
    for entry in rounds:
        marketo.update({k: entry["marketo"][k] for k in ("token", "leads", "total")})
    total["marketo"] = dict(marketo)
    total["marketo_calls_per_10k_checks"] = per_10k(marketo["total"], total["requests"])
    return total


def ratios(a: dict, b: dict) -> dict:
    return {
        "rps": ratio(a["rps"], b["rps"]),
        "p50": ratio(a["p50_ms"], b["p50_ms"]),
        "p99": ratio(a["p99_ms"], b["p99_ms"]),
        "cpu_per_request": ratio(a["server_cpu_ms_per_request"], b["server_cpu_ms_per_request"]),
    }


# ------------------------------------------------------------------ databases
class Databases:
    """SQLite files under the run's temporary directory and PostgreSQL databases this run created."""

    def __init__(self, tmp: Path, pg_url: str):
        self.tmp = tmp
        self.pg_url = pg_url
        self.created_pg: list[str] = []

    def _maintenance(self):
        from sqlalchemy import create_engine

        from gateway.config import normalize_database_url

        return create_engine(normalize_database_url(self.pg_url), isolation_level="AUTOCOMMIT")

    def new(self, backend: str, name: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{self.tmp / (name + '.sqlite3')}"
        from sqlalchemy import text
        from sqlalchemy.engine import make_url

        db = f"{PG_DB_PREFIX}_{name}_{os.getpid()}"
        engine = self._maintenance()
        try:
            with engine.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{db}"'))
        finally:
            engine.dispose()
        self.created_pg.append(db)
        return make_url(self.pg_url).set(database=db).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        if not self.created_pg:
            return
        from sqlalchemy import text

        engine = self._maintenance()
        try:
            with engine.connect() as connection:
                for db in list(self.created_pg):
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
                    self.created_pg.remove(db)
        finally:
            engine.dispose()


def sqlalchemy_url(url: str) -> str:
    from gateway.config import normalize_database_url

    return normalize_database_url(url)


def bulk_insert(url: str, count: int) -> dict:
    """`count` rows straight into mirror_unsubscribes (SQLAlchemy core executemany, one transaction per chunk)."""
    from sqlalchemy import insert, text

    from gateway.store.db import make_engine
    from gateway.store.models import MirrorUnsubscribe

    engine = make_engine(sqlalchemy_url(url))
    table = MirrorUnsubscribe.__table__
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    try:
        for start in range(0, count, INSERT_CHUNK):
            rows = [{"email": big_address(i), "changed_at": now} for i in range(start, min(count, start + INSERT_CHUNK))]
            with engine.begin() as connection:
                connection.execute(insert(table), rows)
        inserted = time.perf_counter() - started
        if engine.dialect.name == "postgresql":
            # What autovacuum would do soon after a load this size; keeps the planner's figures true.
            with engine.begin() as connection:
                connection.execute(text("ANALYZE mirror_unsubscribes"))
    finally:
        engine.dispose()  # SQLite: the last connection to close checkpoints the WAL into the file
    return {"rows": count, "seconds": round(inserted, 2), "rows_per_s": round(count / inserted) if inserted else None}


def mark_mirror_fresh(url: str) -> None:
    """What a finished full load leaves: load complete, last success now (GATEWAY_MIRROR_MAX_AGE keeps it fresh)."""
    from sqlalchemy import update

    from gateway.store import SYNC_ID
    from gateway.store.db import make_engine
    from gateway.store.models import SyncState

    engine = make_engine(sqlalchemy_url(url))
    now = datetime.now(timezone.utc)
    try:
        with engine.begin() as connection:
            connection.execute(update(SyncState).where(SyncState.id == SYNC_ID).values(
                load_status="complete", load_started_at=now, load_window_start=now, load_export_id=None,
                load_finished_at=now, last_success_at=now, last_attempt_at=now, last_error=None,
            ))
    finally:
        engine.dispose()


def database_size(url: str) -> dict:
    if url.startswith("sqlite"):
        path = Path(url.split("sqlite:///", 1)[1])
        sizes = {suffix or "db": Path(str(path) + suffix).stat().st_size
                 for suffix in ("", "-wal") if Path(str(path) + suffix).exists()}
        return {"bytes": sum(sizes.values()), "files": sizes}
    from sqlalchemy import text

    from gateway.store.db import make_engine

    engine = make_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as connection:
            db = connection.execute(text("SELECT pg_database_size(current_database())")).scalar()
            table = connection.execute(text("SELECT pg_total_relation_size('mirror_unsubscribes')")).scalar()
    finally:
        engine.dispose()
    return {"bytes": db, "mirror_table_bytes": table}


def load_mirror_in_process(gate_env: dict) -> dict:
    """One MirrorSync run (full load, then the change stream), in this process, on the gate's database."""
    from gateway import build_gate
    from gateway.config import load_config
    from gateway.worker import mirror_sync_for

    gate = build_gate(load_config(gate_env))
    try:
        started = time.perf_counter()
        report = mirror_sync_for(gate, threading.Event(), owner="bench-initial-load").run_once()
        seconds = time.perf_counter() - started
        status = gate.store.sync.status()
        size = gate.store.mirror.size()
    finally:
        gate.store.engine.dispose()
    if not report.ran or report.error or status.load_status != "complete":
        raise BenchError(f"the mirror's full load failed: ran={report.ran}, error={report.error}, "
                         f"load_status={status.load_status}")
    return {"seconds": round(seconds, 2), "windows": report.loaded_windows, "change_pages": report.change_pages,
            "mirror_size": size}


# ------------------------------------------------------------------ part 1
def part_modes(args, procs: Processes, env: dict, sim, sim_port: int, dbs: Databases, seeded: dict) -> tuple[dict, dict]:
    """Mirror vs live vs live with a cold cache vs bare, alternating rounds. Returns (results, the mirror gate)."""
    mirror_url, live_url = dbs.new("sqlite", "mirror"), dbs.new("sqlite", "live")
    extra = {
        # Leads in the simulator are created now: a load from two days back covers them in one window.
        "GATEWAY_MIRROR_LOAD_FROM": (datetime.now(timezone.utc) - timedelta(days=2)).date().isoformat(),
        "GATEWAY_EXPORT_POLL_SECONDS": "0.2",
        "GATEWAY_MIRROR_MAX_AGE": str(args.mirror_max_age),
        "GATEWAY_SYNC_INTERVAL": str(args.sync_interval),
    }
    mirror_env = {**gate_environment(env, mirror_url, sim_port), **extra}
    live_env = {**gate_environment(env, live_url, sim_port), **extra}
    migrate(mirror_env, mirror_url, procs.log_dir)
    migrate(live_env, live_url, procs.log_dir)
    before = sim_stats(sim_port)
    load = load_mirror_in_process(mirror_env)
    load["marketo"] = stats_delta(before, sim_stats(sim_port))
    expected = seeded["people_unsubscribed"]
    if load["mirror_size"] != expected:
        raise BenchError(f"the mirror holds {load['mirror_size']} addresses, Marketo {expected} unsubscribed")
    print(f"mirror loaded in process: {load['mirror_size']} addresses in {load['seconds']} s "
          f"({load['marketo']['total']} Marketo calls)", flush=True)

    servers, ready = {}, {}
    servers["mirror"], mirror_port, ready["mirror"] = start_server(procs, "gate-mirror", GATE_APP, mirror_env)
    servers["live"], live_port, ready["live"] = start_server(procs, "gate-live", GATE_APP, live_env)
    servers["bare"], bare_port, ready["bare"] = start_server(procs, "bare", BARE_APP, live_env)
    for port in (mirror_port, live_port):
        turn_check_on(port)
    mode = {name: admin_status(port)["mirror"] for name, port in (("mirror", mirror_port), ("live", live_port))}
    if mode["mirror"]["mode"] != "mirror" or mode["live"]["mode"] != "live":
        raise BenchError(f"gates in the wrong mode: {mode}")
    sample = {name: check_one(port, person_address(0)) for name, port in (("mirror", mirror_port), ("live", live_port))}
    if sample != {"mirror": ("deny", "mirror"), "live": ("deny", "live")}:
        raise BenchError(f"sanity check of {person_address(0)} (unsubscribed): {sample}")
    print(f"gates up: mirror :{mirror_port} ({mode['mirror']['size']} in the mirror), live :{live_port}, "
          f"bare :{bare_port}", flush=True)

    people = [person_address(i) for i in range(args.leads)]
    bodies = [{"client": "outlook", "to": [address]} for address in people]
    cold = args.leads - args.hot
    weights = [args.hot_share / args.hot] * args.hot + ([(1 - args.hot_share) / cold] * cold if cold else [])
    ports = {"bare": bare_port, "mirror": mirror_port, "live": live_port, "live-cold": live_port}
    server_of = {"bare": "bare", "mirror": "mirror", "live": "live", "live-cold": "live"}
    targets = [t for t in PART1_TARGETS if t != "live-cold" or not args.no_cold]
    common = dict(concurrency=args.concurrency, load_procs=args.load_procs, env=env, balance=not args.no_balance)

    def load_round(target: str, seconds: float, label: str) -> tuple[dict, dict]:
        template = {"body": COLD_TEMPLATE, "mode": "unique"} if target == "live-cold" else None
        before = sim_stats(sim_port)
        result = run_load(procs, target, ports[target], [] if template else bodies, None if template else weights,
                          duration=seconds, seed=label, server=servers[server_of[target]], others=(sim,),
                          template=template, **common)
        return result, stats_delta(before, sim_stats(sim_port))

    warm = {}
    if args.warmup > 0:
        for target in targets:
            if target == "live-cold":
                continue  # a cold cache needs no warming
            result, marketo = load_round(target, args.warmup, f"warmup-{target}")
            warm[target] = {**summarize([result]), "marketo": marketo}
            print(f"warm-up {target}: {warm[target]['rps']} req/s, Marketo calls {marketo['total']}", flush=True)

    rounds, runs = [], {t: [] for t in targets}
    for index in range(args.rounds):
        for target in targets:
            result, marketo = load_round(target, args.duration, f"round{index}-{target}")
            runs[target].append(result)
            figures = summarize([result])
            entry = {"round": index + 1, "target": target, **figures, "marketo": marketo,
                     "marketo_calls_per_10k_checks": per_10k(marketo["total"], figures["requests"])}
            rounds.append(entry)
            print(f"round {index + 1} {target}: {figures['rps']} req/s, p50 {figures['p50_ms']} ms, "
                  f"p99 {figures['p99_ms']} ms, non-200 {figures['non_200']}, via {figures['checked_via']}, "
                  f"Marketo calls {marketo['total']}", flush=True)

    totals = {t: pooled([r for r in rounds if r["target"] == t], runs[t]) for t in targets}
    pairs = [("mirror", "bare"), ("live", "bare"), ("live-cold", "bare"), ("mirror", "live"), ("mirror", "live-cold")]
    ratio_table = {f"{a}/{b}": ratios(totals[a], totals[b]) for a, b in pairs if a in totals and b in totals}
    per_round = []
    for index in range(args.rounds):
        by = {r["target"]: r for r in rounds if r["round"] == index + 1}
        per_round.append({"round": index + 1, **{f"{a}/{b}": ratio(by[a]["rps"], by[b]["rps"])
                                                  for a, b in pairs if a in by and b in by}})
    results = {
        "endpoint": f"POST {ENDPOINT}",
        "mix": f"{args.hot_share:.0%} of checks to {args.hot} hot addresses, the rest to the other {cold} seeded "
               f"ones; every {args.unsubscribed_every}rd/th unsubscribed; live-cold: a new unseeded address each check",
        "initial_load": load,
        "ready_s": ready,
        "warmup": warm,
        "rounds": rounds,
        "totals": totals,
        "ratios": ratio_table,
        "ratios_rps_per_round": per_round,
    }
    procs.stop(servers["bare"])
    procs.stop(servers["live"])
    return results, {"process": servers["mirror"], "port": mirror_port, "env": mirror_env}


# ------------------------------------------------------------------ part 2
def part_latency(args, procs: Processes, sim_port: int, mirror_gate: dict) -> dict:
    """Unsubscribe a probe address in the simulator, poll the gate every 100 ms until it denies it."""
    gate_port = mirror_gate["port"]
    worker_env = {**mirror_gate["env"], "GATEWAY_SYNC_INTERVAL": str(args.sync_interval)}
    first = admin_status(gate_port)["mirror"]["last_sync_at"]
    before = sim_stats(sim_port)
    started_at = time.monotonic()
    worker = procs.start("worker", [sys.executable, "-m", "gateway.cli", "worker"], env=worker_env)
    deadline = time.monotonic() + 60
    while admin_status(gate_port)["mirror"]["last_sync_at"] == first:
        if worker.poll() is not None:
            raise BenchError(f"gateway worker exited with {worker.returncode}:\n{procs.tail('worker')}")
        if time.monotonic() > deadline:
            raise BenchError(f"gateway worker made no sync within 60 s:\n{procs.tail('worker')}")
        time.sleep(0.2)  # polling the status; bounded by the deadline
    print(f"worker synced (interval {args.sync_interval:g} s); {args.probes} probes over {args.probe_span:g} s ...",
          flush=True)

    rng = random.Random(args.seed)
    slot = args.probe_span / args.probes
    t0 = time.monotonic()
    # One probe in each slot, at a random moment inside it: the moments are spread evenly over the span,
    # so over several sync cycles, and their phase against the cycle varies.
    schedule = [t0 + i * slot + rng.uniform(0, slot) for i in range(args.probes)]
    pending: dict[str, dict] = {}
    samples: list[dict] = []
    seen_via: Counter = Counter()
    next_probe = 0
    tick = 0.1
    while next_probe < len(schedule) or pending:
        tick_start = time.monotonic()
        while next_probe < len(schedule) and tick_start >= schedule[next_probe]:
            address = PROBE.format(next_probe)
            status, body = call(sim_port, "POST", "/_sim/unsubscribe", {"email": address})
            unsubscribed = time.monotonic()
            if status != 200 or body.get("changed") != 1:
                raise BenchError(f"/_sim/unsubscribe {address}: HTTP {status}: {body}")
            lag = admin_status(gate_port)["mirror"]["lag_seconds"]
            pending[address] = {"probe": next_probe, "address": address, "at_s": round(unsubscribed - t0, 2),
                                "since_last_sync_s": round(lag, 2) if lag is not None else None,
                                "_t": unsubscribed, "polls": 0}
            next_probe += 1
        for address, sample in list(pending.items()):
            decision, via = check_one(gate_port, address)
            now = time.monotonic()
            sample["polls"] += 1
            seen_via[via] += 1
            if decision == "deny":
                sample["block_s"] = round(now - sample.pop("_t"), 2)
                sample["checked_via"] = via
                samples.append(pending.pop(address))
            elif now - sample["_t"] > args.probe_timeout:
                sample.pop("_t")
                sample["block_s"] = None
                sample["timed_out"] = True
                samples.append(pending.pop(address))
        if worker.poll() is not None:
            raise BenchError(f"gateway worker exited with {worker.returncode}:\n{procs.tail('worker')}")
        time.sleep(max(0.0, tick_start + tick - time.monotonic()))
    wall = time.monotonic() - started_at
    marketo = stats_delta(before, sim_stats(sim_port))
    status = admin_status(gate_port)
    procs.stop(worker)

    samples.sort(key=lambda s: s["probe"])
    blocked = sorted(s["block_s"] for s in samples if s.get("block_s") is not None)
    phases = [s["since_last_sync_s"] for s in samples if s["since_last_sync_s"] is not None]
    return {
        "sync_interval_s": args.sync_interval,
        "probes": args.probes,
        "span_s": args.probe_span,
        "poll_interval_s": tick,
        "timeout_s": args.probe_timeout,
        "samples": samples,
        "blocked": len(blocked),
        "timed_out": sum(1 for s in samples if s.get("timed_out")),
        "p50_s": percentile(blocked, 50) if blocked else None,
        "p90_s": percentile(blocked, 90) if blocked else None,
        "p99_s": percentile(blocked, 99) if blocked else None,
        "max_s": blocked[-1] if blocked else None,
        "min_s": blocked[0] if blocked else None,
        "phase_since_last_sync_s": [min(phases), max(phases)] if phases else None,
        "checked_via_while_polling": dict(seen_via),
        "worker_marketo_calls": marketo,
        "wall_s": round(wall, 1),
        "status_after": status["mirror"],
    }


# ------------------------------------------------------------------ part 3
def part_big(args, procs: Processes, env: dict, sim, sim_port: int, dbs: Databases) -> dict:
    """A mirror of `--big` addresses against an empty one, per backend, side by side."""
    backends = ["sqlite"] + ([] if args.skip_postgres else ["postgres"])
    setups, servers = {}, {}
    for backend in backends:
        for size in ("empty", "big"):
            key = f"{backend}-{size}"
            url = dbs.new(backend, f"big_{size}" if backend == "sqlite" else size)
            gate_env = {**gate_environment(env, url, sim_port), "GATEWAY_MIRROR_MAX_AGE": "86400"}
            migrate(gate_env, url, procs.log_dir)
            setup = {"backend": backend, "mirror": size, "database": url.rsplit("/", 1)[-1]}
            if size == "big":
                print(f"inserting {args.big:,} addresses into {backend} ...", flush=True)
                setup["insert"] = bulk_insert(url, args.big)
                print(f"  {setup['insert']['seconds']} s ({setup['insert']['rows_per_s']:,} rows/s)", flush=True)
            mark_mirror_fresh(url)
            setup["db_size"] = database_size(url)
            setups[key] = setup
            servers[key] = {"env": gate_env}

    for key in setups:
        process, port, ready = start_server(procs, f"gate-{key}", GATE_APP, servers[key]["env"])
        servers[key].update(process=process, port=port)
        setups[key]["ready_s"] = ready
        turn_check_on(port)
        timings, status = [], None
        for _ in range(5):
            t = time.perf_counter()
            status = admin_status(port)
            timings.append(time.perf_counter() - t)
        mirror = status["mirror"]
        want = args.big if key.endswith("big") else 0
        if mirror["mode"] != "mirror" or mirror["size"] != want:
            raise BenchError(f"{key}: mirror {mirror['mode']} with {mirror['size']} addresses, expected {want}")
        setups[key]["status_ms_median"] = median_ms(timings)
        hit = check_one(port, big_address(args.big - 1))
        want_hit = ("deny", "mirror") if key.endswith("big") else ("allow", "mirror")
        if hit != want_hit or check_one(port, "m1@big.example.com") != ("allow", "mirror"):
            raise BenchError(f"{key}: sanity check failed ({hit})")
        print(f"gate-{key} on :{port}, ready in {ready} s, GET /v1/admin/status {setups[key]['status_ms_median']} ms",
              flush=True)

    common = dict(concurrency=args.concurrency, load_procs=args.load_procs, env=env, balance=not args.no_balance)
    templates = {"hit": BIG_HIT_TEMPLATE, "miss": BIG_MISS_TEMPLATE}

    def load_round(key: str, kind: str, seconds: float, label: str) -> tuple[dict, dict]:
        before = sim_stats(sim_port)
        result = run_load(procs, key, servers[key]["port"], [], None, duration=seconds, seed=label,
                          server=servers[key]["process"], others=(sim,),
                          template={"body": templates[kind], "mode": "random", "range": args.big}, **common)
        return result, stats_delta(before, sim_stats(sim_port))

    if args.warmup > 0:
        for key in setups:
            for kind in ("hit", "miss"):
                load_round(key, kind, args.warmup / 2, f"warmup-{key}-{kind}")
    for key in setups:
        setups[key]["memory_after_warmup"] = memory(servers[key]["process"].pid)

    rounds, runs = [], {}
    for index in range(args.rounds):
        for kind in ("hit", "miss"):
            for key in setups:
                result, marketo = load_round(key, kind, args.duration, f"round{index}-{key}-{kind}")
                runs.setdefault((key, kind), []).append(result)
                figures = summarize([result])
                rounds.append({"round": index + 1, "target": key, "kind": kind, **figures, "marketo": marketo})
                print(f"round {index + 1} {key} {kind}: {figures['rps']} req/s, p50 {figures['p50_ms']} ms, "
                      f"p99 {figures['p99_ms']} ms, non-200 {figures['non_200']}, decisions {figures['decisions']}, "
                      f"Marketo calls {marketo['total']}", flush=True)
    for key in setups:
        setups[key]["memory_after_load"] = memory(servers[key]["process"].pid)
        setups[key]["db_size_after_load"] = database_size(servers[key]["env"]["DATABASE_URL"])

    totals = {}
    for (key, kind), key_runs in runs.items():
        totals.setdefault(key, {})[kind] = pooled([r for r in rounds if r["target"] == key and r["kind"] == kind],
                                                  key_runs)
    ratio_table = {}
    for backend in backends:
        big, empty = f"{backend}-big", f"{backend}-empty"
        entry = {kind: ratios(totals[big][kind], totals[empty][kind]) for kind in ("hit", "miss")}
        mem_big, mem_empty = setups[big]["memory_after_load"], setups[empty]["memory_after_load"]
        entry["rss"] = ratio(mem_big["rss_mb"], mem_empty["rss_mb"])
        entry["pss"] = ratio(mem_big["pss_mb"], mem_empty["pss_mb"]) if mem_big["pss_mb"] and mem_empty["pss_mb"] else None
        entry["db_size"] = ratio(setups[big]["db_size"]["bytes"], setups[empty]["db_size"]["bytes"])
        entry["status_ms"] = ratio(setups[big]["status_ms_median"], setups[empty]["status_ms_median"])
        ratio_table[f"{backend} big/empty"] = entry
    if "postgres-big" in setups:
        ratio_table["postgres/sqlite big"] = {kind: ratios(totals["postgres-big"][kind], totals["sqlite-big"][kind])
                                              for kind in ("hit", "miss")}
    for key in list(servers):
        procs.stop(servers[key]["process"])
    return {
        "big": args.big,
        "addresses": {"hit": "u<random below --big>@big.example.com (in the big mirror)",
                      "miss": "m<random below --big>@big.example.com (in no mirror)"},
        "setups": setups,
        "rounds": rounds,
        "totals": totals,
        "ratios": ratio_table,
    }


# ------------------------------------------------------------------ main
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=5.0, help="seconds per measured load round (default 5)")
    p.add_argument("--rounds", type=int, default=2, help="rounds per target, run alternately (default 2)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per target before the rounds")
    p.add_argument("--concurrency", type=int, default=8, help="keep-alive connections per target (default 8)")
    p.add_argument("--load-procs", type=int, default=2, help="load-generator processes per target (default 2)")
    p.add_argument("--no-balance", action="store_true", help="do not spread connections evenly over the workers")
    p.add_argument("--parts", default="1,2,3", help="which parts to run (default 1,2,3; 2 needs 1)")
    g = p.add_argument_group("part 1: mirror vs live vs bare")
    g.add_argument("--leads", type=int, default=1000, help="seeded leads (default 1000)")
    g.add_argument("--unsubscribed-every", type=int, default=3, help="every Nth seeded lead unsubscribed (default 3)")
    g.add_argument("--hot", type=int, default=100, help="addresses that get --hot-share of the checks (default 100)")
    g.add_argument("--hot-share", type=float, default=0.95, help="share of checks to the hot addresses (default 0.95)")
    g.add_argument("--no-cold", action="store_true", help="skip the live rounds with a cold cache")
    g.add_argument("--mirror-max-age", type=float, default=3600.0,
                   help="GATEWAY_MIRROR_MAX_AGE of the mirror gate (default 3600: fresh for the whole run)")
    g = p.add_argument_group("part 2: unsubscribe-to-block latency")
    g.add_argument("--sync-interval", type=float, default=30.0, help="the worker's GATEWAY_SYNC_INTERVAL (default 30)")
    g.add_argument("--probes", type=int, default=20, help="addresses unsubscribed, one in each equal slot of --probe-span (default 20)")
    g.add_argument("--probe-span", type=float, default=None,
                   help="seconds over which the probes are spread (default 4 sync intervals)")
    g.add_argument("--probe-timeout", type=float, default=None,
                   help="give up on a probe after this many seconds (default max(120, 4 sync intervals))")
    g.add_argument("--seed", default="bench-mirror", help="random seed of the probes' moments")
    g = p.add_argument_group("part 3: a big mirror")
    g.add_argument("--big", type=int, default=1_000_000, help="unsubscribed addresses in the big mirror (default 1e6)")
    g.add_argument("--skip-postgres", action="store_true", help="SQLite only")
    g.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                   help="PostgreSQL maintenance database: the run creates and drops its own databases there")
    p.add_argument("--output", type=Path, default=BENCH / "results" / "mirror.json")
    args = p.parse_args(argv)
    try:
        args.parts = {int(x) for x in args.parts.split(",") if x.strip()}
    except ValueError:
        p.error("--parts is a comma-separated list of 1, 2, 3")
    if not args.parts <= {1, 2, 3} or not args.parts or (2 in args.parts and 1 not in args.parts):
        p.error("--parts takes 1, 2 and 3; part 2 uses part 1's mirror gate")
    if args.duration <= 0 or args.rounds < 1 or args.concurrency < 1 or args.load_procs < 1:
        p.error("--duration, --rounds, --concurrency and --load-procs must be positive")
    if not 1 <= args.hot <= args.leads or not 0 <= args.hot_share <= 1:
        p.error("need 1 <= --hot <= --leads and 0 <= --hot-share <= 1")
    if args.sync_interval <= 0 or args.probes < 1 or args.big < 1:
        p.error("--sync-interval, --probes and --big must be positive")
    if args.probe_span is None:
        args.probe_span = 4 * args.sync_interval
    if args.probe_timeout is None:
        args.probe_timeout = max(120.0, 4 * args.sync_interval)
    return args


def run(args, procs: Processes, dbs: Databases) -> dict:
    env = base_env()
    meta = run_meta(args)
    meta["args"]["parts"] = sorted(args.parts)
    sim, sim_port = start_simulator(procs, env)
    seeded = seed_leads(sim_port, args.leads, args.unsubscribed_every, 0)
    probes = [{"email": PROBE.format(i), "unsubscribed": False} for i in range(args.probes)]
    status, body = call(sim_port, "POST", "/_sim/leads", {"leads": probes}, timeout=60)
    if status != 201:
        raise BenchError(f"seeding the probe leads failed: HTTP {status}: {body}")
    seeded["probes"] = len(probes)
    print(f"simulator on :{sim_port}, seeded {seeded}", flush=True)
    results = {"meta": meta, "seeded": seeded}

    mirror_gate = None
    if 1 in args.parts:
        print("\n== part 1: mirror vs live vs bare", flush=True)
        results["modes"], mirror_gate = part_modes(args, procs, env, sim, sim_port, dbs, seeded)
    if 2 in args.parts:
        print("\n== part 2: unsubscribe-to-block latency", flush=True)
        results["unsubscribe_to_block"] = part_latency(args, procs, sim_port, mirror_gate)
    if mirror_gate is not None:
        procs.stop(mirror_gate["process"])
    if 3 in args.parts:
        print(f"\n== part 3: {args.big:,} addresses in the mirror", flush=True)
        results["big_mirror"] = part_big(args, procs, env, sim, sim_port, dbs)
    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    meta["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    meta["logs"] = str(procs.log_dir)
    return results


# ------------------------------------------------------------------ the table
def _via_shares(via: dict) -> str:
    served = sum(via.values())
    if not served:
        return "-"
    return " ".join(f"{k} {100 * v / served:.0f}%" for k, v in sorted(via.items(), key=lambda kv: -kv[1]))


def _ratio_line(label: str, r: dict) -> str:
    return (f"  {label:<26} req/s {fmt(r['rps'], 3):>6}   p50 {fmt(r['p50'], 2):>5}   p99 {fmt(r['p99'], 2):>5}   "
            f"cpu/req {fmt(r['cpu_per_request'], 2):>5}")


def table(results: dict) -> str:
    meta = results["meta"]
    args = meta["args"]
    lines = [
        f"Marketo unsubscribe gate: mirror benchmark ({meta['started_at']}, {meta['cpus']} CPUs, "
        f"load avg {meta['loadavg_before'][0]} -> {meta['loadavg_after'][0]})",
    ]
    modes = results.get("modes")
    if modes:
        lines += [
            "",
            f"1. Mirror vs live vs bare: POST {ENDPOINT}, 1 recipient; {args['concurrency']} keep-alive connections "
            f"from {args['load_procs']} load process(es); {args['rounds']} x {fmt(args['duration'])} s per target, "
            "alternating; gunicorn 2 workers x 8 threads; SQLite",
            f"{'run':<16}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'non-200':>8}{'srv cpu ms/req':>15}"
            f"{'Marketo':>9}{'per 10k':>9}  checked_via",
        ]

        def row(label, f, marketo, per10k):
            return (f"{label:<16}{fmt(f['rps']):>8}{fmt(f['p50_ms'], 2):>8}{fmt(f['p99_ms'], 2):>8}"
                    f"{fmt(f['max_ms'], 1):>8}{f['non_200']:>8}{fmt(f['server_cpu_ms_per_request'], 3):>15}"
                    f"{marketo:>9}{per10k:>9}  {_via_shares(f['checked_via'])}")

        for r in modes["rounds"]:
            bare = r["target"] == "bare"
            lines.append(row(f"{r['target']} #{r['round']}", r, "-" if bare else str(r["marketo"]["total"]),
                             "-" if bare else fmt(r["marketo_calls_per_10k_checks"], 1)))
        for target, t in modes["totals"].items():
            bare = target == "bare"
            lines.append(row(f"{target} (all)", t, "-" if bare else str(t["marketo"]["total"]),
                             "-" if bare else fmt(t["marketo_calls_per_10k_checks"], 1)))
        lines.append("ratios (pooled rounds):")
        for label, r in modes["ratios"].items():
            lines.append(_ratio_line(label, r))
        per_round = "; ".join(
            f"#{p['round']}: " + ", ".join(f"{k} {fmt(v, 3)}" for k, v in p.items() if k != "round")
            for p in modes["ratios_rps_per_round"])
        lines.append(f"  req/s ratios per round: {per_round}")
        load = modes["initial_load"]
        lines.append(f"  mirror's full load (in process, before the gates started): {load['mirror_size']} addresses, "
                     f"{load['seconds']} s, {load['marketo']['total']} Marketo calls {load['marketo']['calls']}")
        warm = modes["warmup"]
        if warm:
            lines.append("  warm-up (not measured), Marketo calls: " + ", ".join(
                f"{t} {w['marketo']['total']}" for t, w in warm.items() if t != "bare"))
    lat = results.get("unsubscribe_to_block")
    if lat:
        lines += [
            "",
            f"2. Unsubscribe-to-block: `gateway worker` with GATEWAY_SYNC_INTERVAL={fmt(lat['sync_interval_s'], 0)} s; "
            f"{lat['probes']} addresses unsubscribed (POST /_sim/unsubscribe) over {fmt(lat['span_s'], 0)} s, "
            f"gate polled every {int(lat['poll_interval_s'] * 1000)} ms per address",
            f"  blocked {lat['blocked']}/{lat['probes']} (timed out {lat['timed_out']}): "
            f"p50 {fmt(lat['p50_s'], 1)} s, p90 {fmt(lat['p90_s'], 1)} s, p99 {fmt(lat['p99_s'], 1)} s, "
            f"max {fmt(lat['max_s'], 1)} s, min {fmt(lat['min_s'], 1)} s   (goal: p99 under 60 s"
            f"{'; met' if lat['p99_s'] is not None and lat['p99_s'] < 60 and not lat['timed_out'] else '; NOT met'})",
            f"  phase at unsubscribe (s since the last sync started): "
            f"{' .. '.join(fmt(x, 1) for x in lat['phase_since_last_sync_s'] or [])}",
            "  per probe (s): " + " ".join(fmt(s["block_s"], 1) for s in lat["samples"]),
            f"  gate's answers while polling: {lat['checked_via_while_polling']}; worker's Marketo calls "
            f"{lat['worker_marketo_calls']['total']} in {fmt(lat['wall_s'], 0)} s {lat['worker_marketo_calls']['calls']}",
        ]
    big = results.get("big_mirror")
    if big:
        lines += [
            "",
            f"3. {big['big']:,} unsubscribed addresses in the mirror vs an empty mirror (both fresh), side by side; "
            "hit = an address in the big mirror (denied there, so a blocked-send row is written; allowed on the empty "
            "one), miss = in neither",
            f"{'gate':<16}{'kind':<6}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'non-200':>8}"
            f"{'srv cpu ms/req':>15}{'Marketo':>9}  decisions",
        ]
        for key, kinds in big["totals"].items():
            for kind, t in kinds.items():
                lines.append(f"{key:<16}{kind:<6}{fmt(t['rps']):>8}{fmt(t['p50_ms'], 2):>8}{fmt(t['p99_ms'], 2):>8}"
                             f"{fmt(t['max_ms'], 1):>8}{t['non_200']:>8}{fmt(t['server_cpu_ms_per_request'], 3):>15}"
                             f"{t['marketo']['total']:>9}  {t['decisions']}")
        lines.append("")
        lines.append(f"{'gate':<16}{'RSS MB':>8}{'PSS MB':>8}{'peak MB':>8}  {'workers RSS MB':<16}{'db size MB':>11}"
                     f"{'insert s':>9}{'status ms':>10}{'ready s':>8}")
        for key, s in big["setups"].items():
            m = s["memory_after_load"]
            insert = s.get("insert", {}).get("seconds")
            lines.append(f"{key:<16}{fmt(m['rss_mb']):>8}{fmt(m['pss_mb']):>8}{fmt(m['hwm_mb']):>8}  "
                         f"{'+'.join(fmt(w) for w in m['workers_rss_mb']):<16}"
                         f"{fmt(s['db_size']['bytes'] / 1e6):>11}{fmt(insert, 1):>9}"
                         f"{fmt(s['status_ms_median']):>10}{fmt(s['ready_s'], 2):>8}")
        lines.append("ratios:")
        for label, r in big["ratios"].items():
            for kind in ("hit", "miss"):
                lines.append(_ratio_line(f"{label} {kind}", r[kind]))
            if "rss" in r:
                lines.append(f"  {label:<26} RSS {fmt(r['rss'], 3)}, PSS {fmt(r['pss'], 3)}, db size "
                             f"{fmt(r['db_size'], 1)}, GET /v1/admin/status {fmt(r['status_ms'], 1)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    databases: list[Databases] = []

    def run_all(procs: Processes, tmp: Path) -> dict:
        databases.append(Databases(tmp, args.pg_url))
        return run(args, procs, databases[0])

    def drop_databases(_tmp: Path) -> None:
        for dbs in databases:
            try:
                dbs.drop_all()
            except Exception as error:  # report, and still remove the files
                print(f"warning: could not drop databases {dbs.created_pg}: {error}", file=sys.stderr)

    return run_benchmark(args.output, args.output.parent / "logs" / "mirror", "bench-mirror-", run_all, table,
                         cleanup=drop_databases)


if __name__ == "__main__":
    sys.exit(main())
