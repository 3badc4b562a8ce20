"""The hot path against its ceiling: single-recipient email-client checks answered from the mirror, vs bench/bare_app.py.

    apt-get install -y wrk          # Debian's wrk: the load generator (bench/loadgen.py is slower than the gate)
    .venv/bin/python bench/bench_hotpath.py [--duration 10] [--rounds 3] [--mirror 1000000] [--connections 32]
    .venv/bin/python bench/bench_hotpath.py --rate-limit 1000000/minute --duration 8 --rounds 3
                                    # the README's figures: the rate limiter on, counting in the process (no REDIS_URL)

What it does:

1. migrates a fresh database (SQLite in a temp dir, or --database-url), loads --mirror addresses into the mirror,
   marks the load complete and turns the Marketo check on (no Marketo is needed: the mirror answers);
2. starts the gate (`app:app`) and the bare app (`bench.bare_app:app`), each under gunicorn with the project's own
   gunicorn.conf.py (its gevent workers and access log) and the same environment;
3. waits for every gate worker to build its in-process view of the mirror, and reads each worker's memory;
4. drives both with wrk (bench/hotpath.lua: a POST body per request, cycling over --addresses recipients, and the
   bearer header), alternately: bare, gate, bare, gate, ...; prints req/s and p99 per round and the ratios;
5. then drives both again, alternately, at the same offered load (--paced-share of the gate's full-speed
   req/s: each connection waits between requests), and compares their p99 there, below saturation;
6. writes bench/results/hotpath.json.

The recipients are not in the mirror (allowed: the common case), except with --unsubscribed-every N, where every
Nth is (denied: those checks write their blocked-send row before answering).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_checks import (  # noqa: E402  (the shared frame: processes, readiness, environment)
    API_KEY,
    AUTH,
    BENCH,
    ENDPOINT,
    ROOT,
    BenchError,
    Processes,
    base_env,
    call,
    cpu_seconds,
    free_port,
    migrate,
    process_tree,
    ratio,
    run_benchmark,
    run_meta,
    wait_ready,
)

LUA = BENCH / "hotpath.lua"
INSERT_CHUNK = 20_000
VIEW_READY_TIMEOUT = 300.0
VIEW_BUILT = re.compile(r"mirror view built: (\d+) addresses, ([\d.]+) MB")
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def mirror_address(i: int) -> str:
    return f"unsubscribed{i}@mirror.example.com"


def recipient_address(i: int) -> str:
    return f"person{i}@example.com"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=10, help="seconds per measured wrk round (default 10)")
    p.add_argument("--rounds", type=int, default=3, help="bare/gate pairs, run alternately (default 3)")
    p.add_argument("--warmup", type=int, default=3, help="unmeasured seconds per target first (default 3)")
    p.add_argument("--connections", type=int, default=32, help="wrk keep-alive connections (default 32)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument("--mirror", type=int, default=1_000_000, help="addresses in the mirror (default 1,000,000)")
    p.add_argument("--addresses", type=int, default=1000, help="distinct recipients checked (default 1000)")
    p.add_argument("--unsubscribed-every", type=int, default=0,
                   help="every Nth recipient is in the mirror (denied); 0: none (default)")
    p.add_argument("--rate-limit", default="off",
                   help="GATEWAY_RATE_LIMIT for the gate (default off, as in bench_checks.py: one key sends the whole load; "
                        "e.g. 1000000/minute to measure the limiter counting in-process)")
    p.add_argument("--paced-share", type=float, default=0.5,
                   help="the paced rounds offer both servers this share of the gate's full-speed req/s (default 0.5)")
    p.add_argument("--database-url", help="a PostgreSQL database to use (default: SQLite in a temp dir); "
                                          "its mirror is replaced")
    p.add_argument("--output", type=Path, default=BENCH / "results" / "hotpath.json")
    args = p.parse_args(argv)
    if min(args.duration, args.rounds, args.connections, args.threads, args.addresses) < 1 or args.mirror < 0:
        p.error("--duration, --rounds, --connections, --threads and --addresses must be positive")
    return args


def find_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise BenchError("wrk is not installed: apt-get install -y wrk (Debian's package)")
    return path


# ---------------------------------------------------------------------- the database
def prepare_database(url: str, args: argparse.Namespace) -> dict:
    """The mirror a finished full load leaves (`--mirror` rows, version 1), the load complete, the check on."""
    from sqlalchemy import delete, insert, text, update

    from gateway.store import SYNC_ID, Store, utcnow
    from gateway.store.db import make_engine
    from gateway.store.models import MirrorRemoval, MirrorUnsubscribe, SyncState

    engine = make_engine(url)
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    in_mirror = [recipient_address(i) for i in range(args.addresses)
                 if args.unsubscribed_every and i % args.unsubscribed_every == 0]
    try:
        with engine.begin() as connection:
            connection.execute(delete(MirrorUnsubscribe))
            connection.execute(delete(MirrorRemoval))
        filler = max(0, args.mirror - len(in_mirror))
        for start in range(0, filler, INSERT_CHUNK):
            rows = [{"email": mirror_address(i), "changed_at": now, "version": 1}
                    for i in range(start, min(filler, start + INSERT_CHUNK))]
            with engine.begin() as connection:
                connection.execute(insert(MirrorUnsubscribe), rows)
        if in_mirror:
            with engine.begin() as connection:
                connection.execute(insert(MirrorUnsubscribe),
                                   [{"email": e, "changed_at": now, "version": 1} for e in in_mirror])
        with engine.begin() as connection:
            connection.execute(update(SyncState).where(SyncState.id == SYNC_ID).values(
                load_status="complete", load_finished_at=utcnow(), last_success_at=utcnow(),
                mirror_version=1, mirror_reset_version=0))
            if engine.dialect.name == "postgresql":
                connection.execute(text("ANALYZE mirror_unsubscribes"))
        Store(engine).settings.update({"marketo_check_enabled": True}, updated_by="bench")
    finally:
        engine.dispose()
    return {"rows": filler + len(in_mirror), "recipients_in_mirror": len(in_mirror),
            "seconds": round(time.perf_counter() - started, 1)}


def view_size_in_process(url: str) -> dict:
    """The in-process view's structure for this mirror, built here by the gate's own code."""
    from gateway.mirror_view import HashSet
    from gateway.store import Store
    from gateway.store.db import make_engine

    engine = make_engine(url)
    try:
        _version, emails = Store(engine).mirror.snapshot()
        started = time.perf_counter()
        hashes = HashSet.of(emails)
        return {"addresses": len(hashes), "bytes": hashes.memory_bytes(),
                "mb": round(hashes.memory_bytes() / 2**20, 2), "build_s": round(time.perf_counter() - started, 2)}
    finally:
        engine.dispose()


# ---------------------------------------------------------------------- servers
def start_server(procs: Processes, name: str, app: str, env: dict) -> tuple[subprocess.Popen, int]:
    """`app` under gunicorn with the project's gunicorn.conf.py, as the Procfile runs it; PORT picks the port."""
    port = free_port()
    server = procs.start(name, [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), app],
                         env={**env, "PORT": str(port)})
    wait_ready(name, port, "/healthz", server, procs)
    return server, port


def workers_of(server: subprocess.Popen) -> list[int]:
    return [pid for pid in process_tree(server.pid) if pid != server.pid]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def wait_for_views(procs: Processes, port: int, workers: int, expected: int) -> list[dict]:
    """Check until every worker has logged its built view (a worker builds it on its first check)."""
    deadline = time.monotonic() + VIEW_READY_TIMEOUT
    body = {"client": "outlook", "to": [recipient_address(1)]}
    while True:
        built = [{"addresses": int(m[1]), "mb": float(m[2])}
                 for m in VIEW_BUILT.finditer(procs.logs["gate"].read_text(errors="replace"))]
        if len(built) >= workers and all(b["addresses"] == expected for b in built[-workers:]):
            return built[-workers:]
        if time.monotonic() > deadline:
            raise BenchError(f"the gate's workers did not build their mirror views in {VIEW_READY_TIMEOUT:.0f} s:\n"
                             f"{procs.tail('gate')}")
        status, answer = call(port, "POST", ENDPOINT, body, headers=AUTH)
        if status != 200:
            raise BenchError(f"check answered HTTP {status}: {answer}")
        time.sleep(0.2)  # poll interval, bounded by the deadline above


# ---------------------------------------------------------------------- wrk
def run_wrk(wrk: str, port: int, args: argparse.Namespace, seconds: int, server: subprocess.Popen,
            delay_ms: float = 0.0) -> dict:
    """One wrk round; with the server's CPU seconds per request (master and workers), a figure the other
    tenants of a busy machine disturb less than requests per second. `delay_ms`: each connection waits that
    long between requests (a fixed offered load); 0: as fast as the server answers."""
    argv = [wrk, "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds}s", "--latency",
            "-s", str(LUA), f"http://127.0.0.1:{port}{ENDPOINT}"]
    env = {**os.environ, "HOTPATH_KEY": API_KEY, "HOTPATH_ADDRESSES": str(args.addresses),
           "HOTPATH_DELAY_MS": f"{delay_ms:g}"}
    pids = process_tree(server.pid)
    cpu_before = sum(cpu_seconds(pids).values())
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=seconds + 60)
    cpu = sum(cpu_seconds(pids).values()) - cpu_before
    if done.returncode != 0:
        raise BenchError(f"wrk failed:\n{done.stdout}{done.stderr}")
    figures = parse_wrk(done.stdout)
    figures["cpu_ms_per_request"] = round(1000 * cpu / figures["requests"], 3) if figures["requests"] else None
    return figures


def parse_wrk(text: str) -> dict:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    requests = re.search(r"(\d+) requests in", text)
    if not (rps and p99 and p50 and requests):
        raise BenchError(f"could not read wrk's output:\n{text}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:.*", text)
    return {
        "rps": float(rps[1]),
        "p50_ms": round(float(p50[1]) * UNITS[p50[2]], 3),
        "p99_ms": round(float(p99[1]) * UNITS[p99[2]], 3),
        "requests": int(requests[1]),
        "non_2xx": int(non_2xx[1]) if non_2xx else 0,
        "socket_errors": errors[0] if errors else None,
    }


# ---------------------------------------------------------------------- the run
def run(args: argparse.Namespace, procs: Processes, tmp: Path) -> dict:
    from gateway.config import normalize_database_url

    wrk = find_wrk()
    env = base_env()
    meta = run_meta(args)
    meta["wrk"] = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.splitlines()[:1]
    url = normalize_database_url(args.database_url) if args.database_url else f"sqlite:///{tmp / 'hotpath.sqlite3'}"
    gate_env = {
        **env,
        "DATABASE_URL": url,
        "SECRET_KEY": "bench",
        "GATEWAY_API_KEYS": f"bench:caller:{API_KEY}",
        "GATEWAY_RATE_LIMIT": args.rate_limit,
        "GATEWAY_MIRROR_MAX_AGE": "86400",  # the mirror stays fresh for the run: no sync worker runs
    }
    meta["migrated_with"] = migrate(gate_env, url, procs.log_dir)
    print(f"loading {args.mirror} addresses into the mirror ...", flush=True)
    loaded = prepare_database(url, args)
    print(f"mirror loaded: {loaded}", flush=True)
    view = view_size_in_process(url)
    print(f"in-process view of {view['addresses']} addresses: {view['mb']} MiB ({view['build_s']} s to build)",
          flush=True)

    gate, gate_port = start_server(procs, "gate", "app:app", gate_env)
    bare, bare_port = start_server(procs, "bare", "bench.bare_app:app", gate_env)  # same env: same gunicorn.conf.py
    gate_workers, bare_workers = workers_of(gate), workers_of(bare)
    rss_before = {pid: rss_mb(pid) for pid in gate_workers}
    views = wait_for_views(procs, gate_port, len(gate_workers), loaded["rows"])
    rss_after = {pid: rss_mb(pid) for pid in gate_workers}
    memory = {"view_per_worker_logged_mb": [v["mb"] for v in views],
              "worker_rss_mb_before_view": list(rss_before.values()),
              "worker_rss_mb_with_view": list(rss_after.values()),
              "bare_worker_rss_mb": [rss_mb(pid) for pid in bare_workers]}
    print(f"gate workers {gate_workers} built their views: {memory}", flush=True)

    ports = {"bare": bare_port, "gate": gate_port}
    servers = {"bare": bare, "gate": gate}
    for target in ("bare", "gate"):
        if args.warmup:
            warm = run_wrk(wrk, ports[target], args, args.warmup, servers[target])
            print(f"warm-up {target}: {warm['rps']} req/s", flush=True)
    rounds = []
    for index in range(args.rounds):
        for target in ("bare", "gate"):
            figures = run_wrk(wrk, ports[target], args, args.duration, servers[target])
            rounds.append({"round": index + 1, "target": target, **figures})
            print(f"round {index + 1} {target}: {figures['rps']} req/s, p50 {figures['p50_ms']} ms, "
                  f"p99 {figures['p99_ms']} ms, CPU {figures['cpu_ms_per_request']} ms/request, "
                  f"non-2xx {figures['non_2xx']}", flush=True)
            if figures["non_2xx"]:
                raise BenchError(f"{target} answered {figures['non_2xx']} requests with an error:\n{procs.tail(target)}")

    def mean(target, key, of=rounds):
        values = [r[key] for r in of if r["target"] == target]
        return round(sum(values) / len(values), 3)

    # Latency at the same offered load for both, below saturation: at full speed each p99 is mostly time
    # queued for a CPU shared with wrk and the other server, which says more about the machine than the app.
    paced_rps = round(args.paced_share * mean("gate", "rps"))
    delay_ms = 1000 * args.connections / paced_rps
    paced = []
    for index in range(args.rounds):
        for target in ("bare", "gate"):
            figures = run_wrk(wrk, ports[target], args, args.duration, servers[target], delay_ms=delay_ms)
            paced.append({"round": index + 1, "target": target, **figures})
            print(f"paced round {index + 1} {target} (offered {paced_rps} req/s): {figures['rps']} req/s, "
                  f"p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms", flush=True)
            if figures["non_2xx"]:
                raise BenchError(f"{target} answered {figures['non_2xx']} requests with an error:\n{procs.tail(target)}")
    at_same_load = {"offered_rps": paced_rps, "delay_ms": round(delay_ms, 2),
                    **{t: {"rps": mean(t, "rps", paced), "p50_ms": mean(t, "p50_ms", paced),
                           "p99_ms": mean(t, "p99_ms", paced)} for t in ("bare", "gate")}}
    at_same_load["p99_ratio"] = ratio(at_same_load["gate"]["p99_ms"], at_same_load["bare"]["p99_ms"])
    at_same_load["p99_ratio_per_round"] = [
        ratio(*(next(r["p99_ms"] for r in paced if r["round"] == index + 1 and r["target"] == t)
                for t in ("gate", "bare"))) for index in range(args.rounds)]

    totals = {t: {"rps": mean(t, "rps"), "p50_ms": mean(t, "p50_ms"), "p99_ms": mean(t, "p99_ms"),
                  "cpu_ms_per_request": mean(t, "cpu_ms_per_request")} for t in ("bare", "gate")}
    per_round = []
    for index in range(args.rounds):
        b, g = (next(r for r in rounds if r["round"] == index + 1 and r["target"] == t) for t in ("bare", "gate"))
        per_round.append({"round": index + 1, "rps": ratio(g["rps"], b["rps"]), "p99": ratio(g["p99_ms"], b["p99_ms"])})
    ratios = {"rps": ratio(totals["gate"]["rps"], totals["bare"]["rps"]),
              "p99": ratio(totals["gate"]["p99_ms"], totals["bare"]["p99_ms"]),
              # bare's CPU per request over the gate's: the req/s ratio a machine with cores to spare would see
              "cpu_per_request_bare_over_gate": ratio(totals["bare"]["cpu_ms_per_request"],
                                                      totals["gate"]["cpu_ms_per_request"]),
              "per_round": per_round}
    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    meta["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    meta["logs"] = str(procs.log_dir)
    return {"meta": meta, "mirror": loaded, "view": view, "memory": memory, "rounds": rounds, "totals": totals,
            "ratio_gate_over_bare": ratios, "paced_rounds": paced, "at_same_load": at_same_load,
            "goal": {"rps_ratio_at_least": 0.6, "p99_ratio_at_most": 2.0}}


def table(results: dict) -> str:
    t, r, v = results["totals"], results["ratio_gate_over_bare"], results["view"]
    lines = [
        f"{'':8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'CPU ms/req':>12}",
        *(f"{name:8}{t[name]['rps']:>10.0f}{t[name]['p50_ms']:>10.2f}{t[name]['p99_ms']:>10.2f}"
          f"{t[name]['cpu_ms_per_request']:>12.3f}" for name in ("bare", "gate")),
        f"gate/bare: req/s {r['rps']} (goal >= 0.6), p99 {r['p99']} (goal <= 2.0); per round (req/s, p99): "
        f"{[(p['rps'], p['p99']) for p in r['per_round']]}",
        f"at the same offered load ({results['at_same_load']['offered_rps']} req/s each): p99 bare "
        f"{results['at_same_load']['bare']['p99_ms']} ms, gate {results['at_same_load']['gate']['p99_ms']} ms, "
        f"ratio {results['at_same_load']['p99_ratio']} (per round {results['at_same_load']['p99_ratio_per_round']})",
        f"CPU per request, bare/gate: {r['cpu_per_request_bare_over_gate']} (load average after the run: "
        f"{results['meta']['loadavg_after']})",
        f"mirror view: {v['addresses']} addresses in {v['mb']} MiB per worker (goal <= 32 MiB); "
        f"worker RSS {results['memory']['worker_rss_mb_before_view']} -> "
        f"{results['memory']['worker_rss_mb_with_view']} MB",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_benchmark(args.output, args.output.parent / "logs-hotpath", "bench-hotpath-",
                         lambda procs, tmp: run(args, procs, tmp), table)


if __name__ == "__main__":
    sys.exit(main())
