"""Fault-injection benchmark (issue 11): the gate under the faults that broke it, one table of outcomes.

    .venv/bin/python bench/bench_faults.py                       # this tree, every fault (about 8 minutes)
    .venv/bin/python bench/bench_faults.py --tree /tmp/old-gate  # the same faults against another checkout
    .venv/bin/python bench/bench_faults.py --only slow_clients,redis_freeze

Everything is the run's own, on 127.0.0.1 and free ports: a PostgreSQL cluster in a temporary folder (started,
stopped and restarted by the run; needs PostgreSQL's server binaries, and `runuser` when run as root), a
redis-server (frozen with SIGSTOP), the Marketo simulator (faults through its /_sim/ API), and the gate as
production runs it: `gunicorn app:app` with the tree's gunicorn.conf.py, `gateway worker`. Run a tree's
checkout with `--tree` to get its "before" column; the gate is imported from that tree (PYTHONPATH).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fault_servers import OwnPostgres, OwnRedis, free_port, postgres_bin, wait_for  # noqa: E402

KEY = "bench-key"
AUTH = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
FAULTS = ("pg_outage", "redis_freeze", "slow_marketo", "marketo_outage", "worker_kill", "slow_clients")


class Run:
    """The servers of one run, and a clean stop of all of them."""

    def __init__(self, tree: Path, logs: Path):
        self.tree, self.logs = tree, logs
        self.processes: list[subprocess.Popen] = []
        self.folder = tempfile.mkdtemp(prefix="gate-bench-pg-")
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self.pg = OwnPostgres(postgres_bin(), os.path.join(self.folder, "data"), free_port())
        self.pg.init()
        self.pg.start()
        self.redis = OwnRedis(free_port())
        self.redis.start()
        self.databases = 0

    def env(self, **extra) -> dict:
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("GATEWAY_", "MARKETO_", "GUNICORN_", "WEB_CONCURRENCY", "PORT", "DATABASE_URL"))}
        return {**keep, "PYTHONPATH": str(self.tree), "SECRET_KEY": "bench", **{k: str(v) for k, v in extra.items()}}

    def start(self, name: str, argv: list, **extra) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")
        process = subprocess.Popen([str(a) for a in argv], cwd=self.tree, env=self.env(**extra), stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen, sig=signal.SIGTERM) -> None:
        if process.poll() is None:
            os.killpg(process.pid, sig)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def new_database(self) -> str:
        """A fresh, migrated database on the run's cluster."""
        self.databases += 1
        name = f"gate{self.databases}"
        self.python(f"import sqlalchemy as s; e=s.create_engine('{self.pg.url}', isolation_level='AUTOCOMMIT');"
                    f"e.connect().execute(s.text('CREATE DATABASE {name}'))".replace("postgresql://", "postgresql+psycopg://"))
        url = self.pg.url.rsplit("/", 1)[0] + "/" + name
        self.python(f"from gateway.store.db import make_engine, upgrade; upgrade(make_engine('{url}'))")
        return url

    def python(self, code: str) -> str:
        return subprocess.run([sys.executable, "-c", code], cwd=self.tree, env=self.env(), check=True,
                              capture_output=True, text=True, timeout=120).stdout

    def sql(self, url: str, query: str):
        from sqlalchemy import create_engine, text
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        try:
            with engine.connect() as connection:
                return connection.execute(text(query)).fetchall()
        finally:
            engine.dispose()

    def simulator(self) -> int:
        port = free_port()
        self.start(f"simulator-{port}", [sys.executable, "-m", "gateway.simulators.marketo", "--port", port, "--quiet",
                                         "--rate-limit-calls", 1_000_000, "--daily-quota", 100_000_000,
                                         "--max-concurrent", 1000])
        wait_for(lambda: request(port, "GET", "/_sim/stats")[0] == 200, what="the simulator")
        return port

    def gate_env(self, db: str, sim: int, **extra) -> dict:
        return {"DATABASE_URL": db, "MARKETO_BASE_URL": f"http://127.0.0.1:{sim}", "MARKETO_CLIENT_ID": "sim-client",
                "MARKETO_CLIENT_SECRET": "sim-secret", "GATEWAY_API_KEYS": f"bench:admin:{KEY}",
                "GATEWAY_RATE_LIMIT": "off", "GATEWAY_MIRROR_LOAD_FROM": "2026-01-01",
                "GATEWAY_EXPORT_POLL_SECONDS": "0.2", **extra}

    def web(self, db: str, sim: int, **extra) -> int:
        port = free_port()
        self.start(f"web-{port}", [sys.executable, "-m", "gunicorn", "-c", self.tree / "gunicorn.conf.py", "app:app"],
                   PORT=port, **self.gate_env(db, sim, **extra))
        wait_for(lambda: request(port, "GET", "/healthz")[0] == 200, timeout=60, what="gunicorn")
        status, body = request(port, "PATCH", "/v1/admin/settings", {"marketo_check_enabled": True})
        assert status == 200, body
        return port

    def worker(self, name: str, db: str, sim: int, **extra) -> subprocess.Popen:
        return self.start(name, [sys.executable, "-m", "gateway.cli", "worker"], **self.gate_env(db, sim, **extra))

    def close(self) -> None:
        for process in self.processes:
            self.stop(process, signal.SIGKILL)
        self.redis.stop()
        try:
            self.pg.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


def request(port: int, method: str, path: str, body=None, headers=None, timeout: float = 30.0):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=None if body is None else json.dumps(body), headers=headers or AUTH)
        response = connection.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data.decode(errors="replace")
    except OSError:
        return None, None
    finally:
        connection.close()


def check(port: int, address: str, timeout: float = 30.0, headers=None):
    """One email-client check: (status, checked_via, seconds at the client)."""
    started = time.monotonic()
    status, body = request(port, "POST", "/v1/hooks/email-client", {"client": "outlook", "to": [address]},
                           headers=headers, timeout=timeout)
    via = body["recipients"][0]["checked_via"] if status == 200 else None
    return status, via, time.monotonic() - started


def open_loop(port: int, rate: float, seconds: float, address, timeout: float = 30.0) -> list:
    """`rate` checks a second for `seconds`, each sent on time whatever the others do; latency from its send time."""
    results = []
    with ThreadPoolExecutor(max_workers=int(rate * 35) + 8) as pool:
        start = time.monotonic()
        for n in range(int(rate * seconds)):
            time.sleep(max(0.0, start + n / rate - time.monotonic()))
            results.append(pool.submit(check, port, address(n), timeout))
    return [future.result() for future in results]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def last_success(run: Run, db: str):
    rows = run.sql(db, "SELECT extract(epoch from last_success_at) FROM sync_state")
    return float(rows[0][0]) if rows and rows[0][0] is not None else None


# --- the faults -------------------------------------------------------------------------------------------------


def pg_outage(run: Run, args) -> str:
    sim = run.simulator()
    db = run.new_database()
    # A budget that does not pace the sync beyond its interval: the fault under test is the database.
    worker = run.worker("pg-worker", db, sim, GATEWAY_SYNC_INTERVAL=5, GATEWAY_MARKETO_DAILY_BUDGET=1_000_000)
    wait_for(lambda: last_success(run, db), timeout=60, what="the first sync")
    run.pg.stop()
    time.sleep(args.pg_down)  # the outage itself, not a wait for a condition
    run.pg.start()
    back = time.time()
    try:
        wait_for(lambda: (s := last_success(run, db)) and s > back, timeout=60, what="a sync after the outage")
        fresh = f"synced {time.time() - back:.1f} s after it returned (sync interval 5 s)"
    except AssertionError:
        fresh = "not fresh within 60 s"
    alive = worker.poll() is None
    run.stop(worker)
    return f"PostgreSQL down {args.pg_down:.0f} s: worker {'alive' if alive else 'EXITED'}, mirror {fresh}"


def redis_freeze(run: Run, args) -> str:
    sim = run.simulator()
    db = run.new_database()
    request(sim, "POST", "/_sim/leads", {"leads": [{"email": "jane@example.com", "unsubscribed": True}]})
    web = run.web(db, sim, REDIS_URL=run.redis.url, GATEWAY_RATE_LIMIT="100000 per minute")
    timer = threading.Timer(3, run.redis.freeze)
    thaw = threading.Timer(3 + args.redis_frozen, run.redis.thaw)
    timer.start(), thaw.start()
    results = open_loop(web, 25, args.redis_frozen + 6, lambda n: "jane@example.com")
    thaw.join()
    errors = sum(1 for status, _, _ in results if status is None or status >= 500)
    return f"Redis frozen {args.redis_frozen:.0f} s at 25 checks/s: {errors} of {len(results)} answers 5xx or none"


def slow_marketo(run: Run, args) -> str:
    lines = []
    for rate in args.rates:
        sim = run.simulator()
        db = run.new_database()  # never synced: the mirror is stale, every new address goes to Marketo
        web = run.web(db, sim)
        request(sim, "POST", "/_sim/faults", {"latency": 10.0})  # every REST call takes 10 s, until cleared
        results = open_loop(web, rate, args.load_seconds, lambda n, r=rate: f"new{r}-{n}@example.com")
        seconds = [s for status, _, s in results if status == 200]
        within = sum(1 for status, _, s in results if status == 200 and s <= 3.0)
        lines.append(f"{rate:g}/s: {100 * within / len(results):.1f} % within 3 s (p50 {pct(seconds, .5):.2f} s, "
                     f"max {max(seconds, default=float('nan')):.2f} s)")
    return "mirror stale, Marketo 10 s slow: " + "; ".join(lines)


def marketo_outage(run: Run, args) -> str:
    sim = run.simulator()
    db = run.new_database()
    request(sim, "POST", "/_sim/leads", {"leads": [{"email": f"seed{i}@example.com", "unsubscribed": i % 3 == 0}
                                                   for i in range(30)]})
    settings = dict(GATEWAY_SYNC_INTERVAL=args.sync_interval, GATEWAY_MIRROR_MAX_AGE=15)
    web = run.web(db, sim, **settings)
    worker = run.worker("outage-worker", db, sim, **settings)
    wait_for(lambda: last_success(run, db), timeout=60, what="the first sync")
    before_calls = request(sim, "GET", "/_sim/stats")[1]["rest_calls"]
    (used_before,), = run.sql(db, "SELECT coalesce(sum(used), 0) FROM marketo_calls")
    request(sim, "POST", "/_sim/faults", {"http_status": 503})
    request(sim, "POST", "/_sim/faults", {"http_status": 503, "paths": "identity"})
    open_loop(web, 6, args.outage, lambda n: f"out{n}@example.com")
    calls = request(sim, "GET", "/_sim/stats")[1]["rest_calls"] - before_calls
    (used_after,), = run.sql(db, "SELECT coalesce(sum(used), 0) FROM marketo_calls")
    try:  # the app-wide breaker's own count (a tree before it has no such table)
        (probes,), = run.sql(db, "SELECT probes_total FROM marketo_circuit")
        probes = f" ({probes} of them probes, {60 * probes / (args.outage / 60):.0f} an hour)"
    except Exception:
        probes = ""
    request(sim, "DELETE", "/_sim/faults")
    back = time.time()
    request(sim, "POST", "/_sim/unsubscribe", {"email": "seed1@example.com"})
    try:
        wait_for(lambda: (s := last_success(run, db)) and s > back, timeout=180, what="a sync after Marketo returned")
        resync = f"resynced {time.time() - back:.0f} s after Marketo returned"
    except AssertionError:
        (error,), = run.sql(db, "SELECT last_error FROM sync_state")
        resync = f"NO resync within 180 s ({(error or '')[:60]})"
    live = [check(web, f"after{i}@example.com")[1] for i in range(3)]
    run.stop(worker)
    return (f"Marketo 503 for {args.outage:.0f} s at 6 checks/s: {calls} calls reached Marketo{probes}, "
            f"{used_after - used_before} charged to the budget; {resync}; new addresses then: {'/'.join(map(str, live))}")


def worker_kill(run: Run, args) -> str:
    sim = run.simulator()
    db = run.new_database()
    request(sim, "POST", "/_sim/leads", {"leads": [{"email": "jane@example.com", "unsubscribed": False}]})
    paced = dict(GATEWAY_SYNC_INTERVAL=2, GATEWAY_MARKETO_DAILY_BUDGET=1_000_000)
    first = run.worker("kill-first", db, sim, **paced)
    wait_for(lambda: last_success(run, db), timeout=60, what="the first sync")
    request(sim, "POST", "/_sim/faults", {"latency": 3.0, "count": 2})  # the next sync hangs in Marketo: mid-sync
    time.sleep(2.5)  # let the next sync begin (its pause is the sync interval)
    run.stop(first, signal.SIGKILL)
    killed = time.time()
    second = run.worker("kill-second", db, sim, **paced)
    request(sim, "POST", "/_sim/unsubscribe", {"email": "jane@example.com"})
    try:
        wait_for(lambda: run.sql(db, "SELECT 1 FROM mirror_unsubscribes WHERE email = 'jane@example.com'"),
                 timeout=200, what="the unsubscribe in the mirror")
        denied = f"unsubscribe in the mirror {time.time() - killed:.0f} s after the kill"
    except AssertionError:
        denied = "unsubscribe NOT in the mirror within 200 s"
    said = "waiting for the sync lease" in (run.logs / "kill-second.log").read_text()
    run.stop(second)
    return f"worker SIGKILLed mid-sync, restarted at once: {denied}; waiting logged: {'yes' if said else 'no'}"


def trickle(port: int, stop: threading.Event) -> None:
    """A client that sends its headers, then its body one byte a second."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(f"POST /v1/hooks/email-client HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n".encode())
        while not stop.wait(1.0):
            sock.sendall(b" ")
    except OSError:
        pass


def slow_clients(run: Run, args) -> str:
    sim = run.simulator()
    db = run.new_database()
    request(sim, "POST", "/_sim/leads", {"leads": [{"email": f"hot{i}@example.com"} for i in range(20)]})
    web = run.web(db, sim)

    def closed_loop() -> list[float]:
        ends = time.monotonic() + args.load_seconds

        def one(thread: int) -> list[float]:
            seconds, n = [], 0
            while time.monotonic() < ends:
                status, _, took = check(web, f"hot{(thread * 7 + n) % 20}@example.com", timeout=30)
                seconds.append(took if status == 200 else 30.0)
                n += 1
            return seconds
        with ThreadPoolExecutor(4) as pool:
            return [s for part in pool.map(one, range(4)) for s in part]

    closed_loop()  # warm-up: the cache, the token, the pools
    unloaded = closed_loop()
    stop = threading.Event()
    slow = [threading.Thread(target=trickle, args=(web, stop), daemon=True) for _ in range(40)]
    for thread in slow:
        thread.start()
    time.sleep(1)  # the trickling clients connect before the measured checks start
    loaded = closed_loop()
    stop.set()
    p99_before, p99_after = pct(unloaded, .99), pct(loaded, .99)
    return (f"40 clients trickling bodies: other checks p99 {p99_after * 1000:.0f} ms vs {p99_before * 1000:.0f} ms "
            f"unloaded ({p99_after / p99_before:.1f}x), {len(loaded)} checks vs {len(unloaded)}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose gate is run (default: this one)")
    parser.add_argument("--only", default=",".join(FAULTS), help="comma-separated: " + ", ".join(FAULTS))
    parser.add_argument("--pg-down", type=float, default=20.0)
    parser.add_argument("--redis-frozen", type=float, default=8.0)
    parser.add_argument("--rates", type=lambda s: [float(r) for r in s.split(",")], default=[8.0, 50.0])
    parser.add_argument("--load-seconds", type=float, default=15.0)
    parser.add_argument("--outage", type=float, default=120.0, help="seconds of the Marketo outage")
    parser.add_argument("--sync-interval", type=float, default=30.0)
    args = parser.parse_args(argv)
    if postgres_bin() is None:
        sys.exit("PostgreSQL's server binaries are needed (apt-get install postgresql)")
    logs = ROOT / "bench" / "results" / "faults-logs"
    logs.mkdir(parents=True, exist_ok=True)
    run = Run(args.tree.resolve(), logs)
    rows = []
    try:
        for name in args.only.split(","):
            started = time.monotonic()
            try:
                outcome = globals()[name](run, args)
            except Exception as error:  # one fault's failure is a row of the table, not the end of the run
                outcome = f"could not run: {type(error).__name__}: {error}"
            rows.append((name, outcome))
            print(f"| {name} | {outcome} |  ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    finally:
        run.close()
    print(f"\ntree: {run.tree}\n\n| fault | outcome |\n|---|---|")
    for name, outcome in rows:
        print(f"| {name} | {outcome} |")


if __name__ == "__main__":
    main()
