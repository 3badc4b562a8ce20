"""Benchmark of the gate's pre-send checks against a bare Flask ceiling, with the Marketo simulator.

    .venv/bin/python bench/bench_checks.py [--duration 10] [--concurrency 8]

What it does (see bench/README.md for what each figure means):

1. starts the Marketo simulator (rate limit and daily quota raised) and seeds leads through /_sim/leads;
2. migrates a fresh SQLite database and starts the gate under gunicorn (2 workers, gthread, 8 threads),
   then turns the Marketo check on through the admin API;
3. starts bench/bare_app.py under the same gunicorn settings, as the ceiling;
4. drives single-recipient email-client checks at both, alternately (bare, gate, bare, gate, ...),
   from separate load processes (bench/loadgen.py), and counts the Marketo calls the gate made;
5. sends one 10,000-recipient group send with a cold cache and counts its Marketo calls;
6. prints a table and writes bench/results/checks.json.

Every server runs in its own process group and is stopped on exit, Ctrl-C or error.
"""
from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
API_KEY = "bench-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SIM_CLIENT_ID, SIM_CLIENT_SECRET = "sim-client", "sim-secret"  # the simulator's defaults
MARKETO_BATCH = 300  # emails per leads.json lookup (Marketo's filterValues limit)
ENDPOINT = "/v1/hooks/email-client"
READY_TIMEOUT = 60.0
# Variables that would change how the gate or gunicorn runs; the benchmark sets its own.
SCRUBBED_ENV_PREFIXES = ("GATEWAY_", "MARKETO_")
SCRUBBED_ENV = ("DATABASE_URL", "SECRET_KEY", "PORT", "WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_CMD_ARGS")


class BenchError(RuntimeError):
    pass


# ------------------------------------------------------------------ processes
class Processes:
    """Every child in its own session (process group), so one killpg stops a server and its workers."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.started: list[tuple[str, subprocess.Popen]] = []
        self.logs: dict[str, Path] = {}
        self.stopped: set[int] = set()

    def start(self, name: str, argv: list[str], *, env: dict, pipes: bool = False) -> subprocess.Popen:
        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "ab")
        kwargs = dict(cwd=ROOT, env=env, start_new_session=True)
        if pipes:
            kwargs.update(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        else:
            kwargs.update(stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            process = subprocess.Popen([str(a) for a in argv], **kwargs)
        finally:
            log.close()  # the child holds its own copy
        self.started.append((name, process))
        self.logs[name] = log_path
        return process

    def stop(self, process: subprocess.Popen, timeout: float = 15.0) -> None:
        if process.pid in self.stopped:
            return
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=5)
        # Workers left behind in the group (a server whose master died first). While any member is
        # alive the group id cannot be reused, so this only ever reaches our own processes.
        if _group_members(process.pid):
            _signal_group(process, signal.SIGKILL)
        self.stopped.add(process.pid)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()

    def stop_all(self) -> None:
        for _name, process in reversed(self.started):
            try:
                self.stop(process)
            except Exception as error:  # keep stopping the others
                print(f"warning: could not stop pid {process.pid}: {error}", file=sys.stderr)

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.logs.get(name)
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                    members.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return members


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)  # the group id is the child's pid (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(root_pid: int) -> list[int]:
    """The pid and its children (gunicorn's master and workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """user + system CPU seconds of each pid (threads included)."""
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return used


def connections_per_process(pids: list[int], port: int) -> dict[int, int]:
    """Established TCP connections on local `port` held by each pid: how the load is spread over workers."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "01" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    held = {}
    for pid in pids:
        count = 0
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    link = os.readlink(fd)
                except OSError:
                    continue
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    count += 1
        except OSError:
            continue
        held[pid] = count
    return held


def connection_owners(port: int, workers: list[int], client_ports: set[int]) -> dict[int, int]:
    """client port -> pid of the server worker that accepted that connection (those accepted so far)."""
    server_side = {}  # socket inode -> client port
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            local_port = int(cols[1].rsplit(":", 1)[1], 16)
            remote_port = int(cols[2].rsplit(":", 1)[1], 16)
            if cols[3] == "01" and local_port == port and remote_port in client_ports and cols[9] != "0":
                server_side[cols[9]] = remote_port
    owners = {}
    for pid in workers:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in server_side:
                owners[server_side[link[8:-1]]] = pid
    return owners


def balance_connections(children: list, port: int, workers: list[int], ready: list[list[int]],
                        attempts: int = 30) -> tuple[list[int], int]:
    """Replace connections until they are spread evenly over the server's workers (or give up).
    `ready` holds each load process's client ports; returns (connections per worker, replacements made)."""
    replaced = 0
    for attempt in range(attempts + 1):
        wanted = {p for ports in ready for p in ports}
        deadline = time.monotonic() + 5.0
        while True:
            owners = connection_owners(port, workers, wanted)
            if len(owners) == len(wanted) or time.monotonic() > deadline:
                break
            time.sleep(0.01)  # waiting for the workers to accept; bounded by the deadline
        counts = Counter({pid: 0 for pid in workers})
        counts.update(owners.values())
        fair = math.ceil(len(wanted) / max(1, len(workers)))
        surplus = set()
        for pid, count in counts.items():
            if count > fair:
                surplus.update(sorted(p for p, owner in owners.items() if owner == pid)[: count - fair])
        surplus.update(wanted - owners.keys())  # never accepted: replace as well
        if not surplus or attempt == attempts:
            return sorted(counts.values(), reverse=True), replaced
        for index, child in enumerate(children):
            mine = [p for p in ready[index] if p in surplus]
            if mine:
                child.stdin.write("reconnect " + json.dumps(mine) + "\n")
                child.stdin.flush()
                ready[index] = read_ready(child)
                replaced += len(mine)
    raise AssertionError("unreachable")


def read_ready(child: subprocess.Popen) -> list[int]:
    line = child.stdout.readline().strip()
    command, _, ports = line.partition(" ")
    if command != "ready":
        raise BenchError(f"load generator did not start ({line!r})")
    return json.loads(ports)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------ HTTP
def call(port: int, method: str, path: str, body=None, headers=None, timeout: float = 30.0, with_size=False):
    """One request on a fresh connection; returns (status, parsed JSON or raw text[, body bytes])."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        all_headers = dict(headers or {})
        if payload is not None:
            all_headers["Content-Type"] = "application/json"
        connection.request(method, path, body=payload, headers=all_headers)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = data.decode(errors="replace")
    return (response.status, parsed, len(data)) if with_size else (response.status, parsed)


def wait_ready(name: str, port: int, path: str, process: subprocess.Popen, procs: Processes) -> float:
    """Poll until `path` answers 200, with a deadline; returns the seconds it took."""
    started = time.monotonic()
    deadline = started + READY_TIMEOUT
    last = "no answer"
    while True:
        if process.poll() is not None:
            raise BenchError(f"{name} exited with {process.returncode} while starting:\n{procs.tail(name)}")
        try:
            status, body = call(port, "GET", path, timeout=2)
            if status == 200:
                return time.monotonic() - started
            if status == 500:  # up, but broken: waiting will not help
                raise BenchError(f"{name} answered {path} with HTTP 500: {str(body)[:500]}\n{procs.tail(name)}")
            last = f"HTTP {status}"
        except OSError as error:
            last = type(error).__name__
        if time.monotonic() > deadline:
            raise BenchError(f"{name} not ready after {READY_TIMEOUT:.0f} s ({last}):\n{procs.tail(name)}")
        time.sleep(0.05)  # poll interval; bounded by the deadline above


# -------------------------------------------------------------------- simulator
def sim_stats(port: int) -> dict:
    status, body = call(port, "GET", "/_sim/stats")
    if status != 200:
        raise BenchError(f"/_sim/stats answered {status}: {body}")
    return body


def stats_delta(before: dict, after: dict) -> dict:
    def diff(key):
        a, b = before.get(key, {}), after.get(key, {})
        return {k: b.get(k, 0) - a.get(k, 0) for k in sorted(set(a) | set(b)) if b.get(k, 0) - a.get(k, 0)}

    calls = diff("calls")
    return {
        "token": calls.get("token", 0),
        "leads": calls.get("leads", 0),
        "total": sum(calls.values()),
        "calls": calls,  # every kind the simulator counts
        "rejected": diff("rejected"),
        "errors": diff("errors"),
    }


def person_address(i: int) -> str:
    return f"person{i}@example.com"


def member_address(i: int) -> str:
    return f"member{i}@example.com"


def member_seeded(i: int) -> bool:
    return i % 10 < 3  # 30 % of the group is known to Marketo


def member_unsubscribed(i: int) -> bool:
    return i % 10 == 0  # a third of those has unsubscribed


def seed_leads(port: int, leads: int, unsub_every: int, group_size: int) -> dict:
    people = [{"email": person_address(i), "unsubscribed": i % unsub_every == 0} for i in range(leads)]
    members = [
        {"email": member_address(i), "unsubscribed": member_unsubscribed(i)}
        for i in range(group_size) if member_seeded(i)
    ]
    for chunk in (people, members):
        status, body = call(port, "POST", "/_sim/leads", {"leads": chunk}, timeout=60)
        if status != 201:
            raise BenchError(f"seeding leads failed: HTTP {status}: {body}")
    return {
        "people": len(people),
        "people_unsubscribed": sum(p["unsubscribed"] for p in people),
        "group_seeded": len(members),
        "group_unsubscribed": sum(m["unsubscribed"] for m in members),
    }


# ------------------------------------------------------------------------ load
def percentile(sorted_values: list[int], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(runs: list[dict]) -> dict:
    """One figure set for one or more load runs against one target (their latencies pooled)."""
    latencies = sorted(lat for run in runs for lat in run["latencies_us"])
    statuses, via, decisions = Counter(), Counter(), Counter()
    for run in runs:
        statuses.update(run["statuses"])
        via.update(run["checked_via"])
        decisions.update(run["decisions"])
    elapsed = sum(run["elapsed"] for run in runs)
    requests = len(latencies)
    by_via = {}
    for source in sorted({v for run in runs for v in run.get("latencies_us_by_via", {})}):
        values = sorted(lat for run in runs for lat in run["latencies_us_by_via"].get(source, []))
        by_via[source] = {"requests": len(values), "p50_ms": round(percentile(values, 50) / 1000, 2),
                       "p99_ms": round(percentile(values, 99) / 1000, 2)}
    return {
        "requests": requests,
        "seconds": round(elapsed, 3),
        "rps": round(requests / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(percentile(latencies, 50) / 1000, 2),
        "p90_ms": round(percentile(latencies, 90) / 1000, 2),
        "p99_ms": round(percentile(latencies, 99) / 1000, 2),
        "max_ms": round(latencies[-1] / 1000, 2) if latencies else float("nan"),
        "non_200": sum(count for status, count in statuses.items() if status != "200"),
        "statuses": dict(statuses),
        "checked_via": dict(via),
        "decisions": dict(decisions),
        "latency_by_checked_via": by_via,
        "reconnects": sum(run["reconnects"] for run in runs),
        "client_cpu_cores": round(sum(run["client_cpu"] for run in runs) / elapsed, 2) if elapsed else 0.0,
        "server_cpu_cores": round(sum(run["server_cpu"] for run in runs) / elapsed, 2) if elapsed else 0.0,
        "server_cpu_ms_per_request": (
            round(1000 * sum(run["server_cpu"] for run in runs) / requests, 3) if requests else None),
        "simulator_cpu_s": round(sum(run["other_cpu"] for run in runs), 2),
        "connections_per_worker": [run["connections_per_worker"] for run in runs],
        "connections_replaced": sum(run["connections_replaced"] for run in runs),
    }


def run_load(procs: Processes, name: str, port: int, bodies: list, weights: list | None, *,
             duration: float, concurrency: int, load_procs: int, seed: str, env: dict,
             server: subprocess.Popen, others: tuple = (), balance: bool = True,
             template: dict | None = None) -> dict:
    """`load_procs` load processes share `concurrency` connections; they start on one 'go'.
    `template` (see loadgen.py) makes each request's body from a template instead of `bodies`.
    Also measures the CPU the server (and `others`, e.g. the simulator) used, and how the
    connections were spread over the server's workers (sampled half-way through)."""
    shares = [concurrency // load_procs + (1 if i < concurrency % load_procs else 0) for i in range(load_procs)]
    children = []
    try:
        for index, share in enumerate(s for s in shares if s):
            child = procs.start(f"loadgen-{name}", [sys.executable, BENCH / "loadgen.py"], env=env, pipes=True)
            children.append(child)
            config = {
                "host": "127.0.0.1", "port": port, "path": ENDPOINT, "headers": AUTH,
                "concurrency": share, "duration": duration, "seed": f"{seed}:{index}",
                "bodies": bodies, "weights": weights,
            }
            if template:
                config["template"] = template
            child.stdin.write(json.dumps(config) + "\n")
            child.stdin.flush()
        try:
            ready = [read_ready(child) for child in children]
        except BenchError as error:
            raise BenchError(f"{error}:\n{procs.tail(f'loadgen-{name}')}") from None
        tree = process_tree(server.pid)
        workers = [pid for pid in tree if pid != server.pid]
        initial_spread, replaced = (
            balance_connections(children, port, workers, ready) if balance else (None, 0))
        watched = tree + [other.pid for other in others]
        cpu_before = cpu_seconds(watched)
        spread: dict[int, int] = {}
        sampler = threading.Timer(duration / 2, lambda: spread.update(connections_per_process(workers, port)))
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        sampler.start()
        results = []
        for child in children:
            out, _ = child.communicate(timeout=duration + 120)
            if child.returncode != 0 or not out.strip():
                raise BenchError(f"load generator failed ({child.returncode}):\n{procs.tail(f'loadgen-{name}')}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        cpu_after = cpu_seconds(watched)
    finally:
        if "sampler" in locals():
            sampler.cancel()
        for child in children:
            procs.stop(child, timeout=5)
    server_cpu = sum(cpu_after.get(pid, 0) - cpu_before.get(pid, 0) for pid in tree)
    other_cpu = {other.pid: cpu_after.get(other.pid, 0) - cpu_before.get(other.pid, 0) for other in others}
    # Processes ran side by side: pool their requests over the longest one's wall time.
    merged = {
        "elapsed": max(r["elapsed"] for r in results),
        "latencies_us": [lat for r in results for lat in r["latencies_us"]],
        "latencies_us_by_via": {},
        "reconnects": sum(r["reconnects"] for r in results),
        "client_cpu": sum(r["client_cpu"] for r in results),
        "server_cpu": server_cpu,
        "other_cpu": sum(other_cpu.values()),
        "connections_per_worker": sorted(spread.values(), reverse=True),
        "connections_at_start": initial_spread,
        "connections_replaced": replaced,
    }
    for r in results:
        for via, values in r.get("latencies_us_by_via", {}).items():
            merged["latencies_us_by_via"].setdefault(via, []).extend(values)
    for key in ("statuses", "checked_via", "decisions"):
        total = Counter()
        for r in results:
            total.update(r[key])
        merged[key] = dict(total)
    return merged


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


# ------------------------------------------------------------------------ main
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured load round (default 10)")
    p.add_argument("--concurrency", type=int, default=8, help="keep-alive connections per target (default 8)")
    p.add_argument("--rounds", type=int, default=2, help="bare/gate pairs, run alternately (default 2)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per target before the rounds")
    p.add_argument("--load-procs", type=int, default=2,
                   help="load-generator processes per target, sharing --concurrency (default 2)")
    p.add_argument("--no-balance", action="store_true",
                   help="keep connections where gunicorn's workers accepted them (default: spread them evenly)")
    p.add_argument("--leads", type=int, default=1000, help="seeded leads for the load phase (default 1000)")
    p.add_argument("--unsubscribed-every", type=int, default=3, help="every Nth seeded lead unsubscribed (default 3)")
    p.add_argument("--hot", type=int, default=100, help="addresses that get --hot-share of the checks (default 100)")
    p.add_argument("--hot-share", type=float, default=0.95, help="share of checks to the hot addresses (default 0.95)")
    p.add_argument("--group-size", type=int, default=10_000, help="recipients in the group send (default 10000)")
    p.add_argument("--output", type=Path, default=BENCH / "results" / "checks.json")
    args = p.parse_args(argv)
    if args.duration <= 0 or args.concurrency < 1 or args.rounds < 1 or args.load_procs < 1:
        p.error("--duration, --concurrency, --rounds and --load-procs must be positive")
    if not 1 <= args.hot <= args.leads or not 0 <= args.hot_share <= 1:
        p.error("need 1 <= --hot <= --leads and 0 <= --hot-share <= 1")
    return args


def base_env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(SCRUBBED_ENV_PREFIXES) and k not in SCRUBBED_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def migrate(env: dict, url: str, log_dir: Path) -> str:
    """`gateway migrate` when the CLI has it, else alembic through the store's upgrade()."""
    cli = Path(sys.executable).parent / "gateway"
    has_cli = cli.exists() and subprocess.run(
        [str(cli), "migrate", "--help"], cwd=ROOT, env=env, capture_output=True, timeout=60
    ).returncode == 0
    if has_cli:
        argv = [str(cli), "migrate"]
    else:
        argv = [sys.executable, "-c",
                "import sys; from gateway.store.db import make_engine, upgrade; upgrade(make_engine(sys.argv[1]))", url]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    (log_dir / "migrate.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise BenchError(f"migration failed ({' '.join(argv[:2])}):\n{done.stdout}{done.stderr}")
    return "gateway migrate" if has_cli else "gateway.store.db.upgrade()"


def gunicorn_argv(app: str, port: int) -> list:
    return [sys.executable, "-m", "gunicorn", app, "--workers", "2", "--worker-class", "gthread",
            "--threads", "8", "--bind", f"127.0.0.1:{port}"]


def run_meta(args: argparse.Namespace) -> dict:
    """When, where and on what code a run was made (for the JSON file)."""
    meta = {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "gunicorn_conf_py": str(ROOT / "gunicorn.conf.py") if (ROOT / "gunicorn.conf.py").exists() else None,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    meta["commit"] = commit.stdout.strip() or None
    changed = subprocess.run(["git", "diff-index", "--name-only", "HEAD", "--"], cwd=ROOT, capture_output=True,
                             text=True)  # plumbing: reads, never writes the index
    meta["files_differing_from_commit"] = changed.stdout.split()
    return meta


def start_simulator(procs: Processes, env: dict, name: str = "simulator") -> tuple[subprocess.Popen, int]:
    """The Marketo simulator on a free port, its rate limit and daily quota raised out of the way."""
    port = free_port()
    sim = procs.start(name, [
        sys.executable, "-m", "gateway.simulators.marketo", "--host", "127.0.0.1", "--port", port,
        "--quiet", "--rate-limit-calls", 1_000_000, "--rate-limit-window", 20, "--daily-quota", 100_000_000,
    ], env=env)
    wait_ready(name, port, "/_sim/stats", sim, procs)
    return sim, port


def gate_environment(env: dict, db_url: str, sim_port: int) -> dict:
    """The gate's environment for a benchmark: its database, the simulator, limits out of the way."""
    return {
        **env,
        "DATABASE_URL": db_url,
        "SECRET_KEY": "bench",
        "GATEWAY_API_KEYS": f"bench:admin:{API_KEY}",
        "MARKETO_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "MARKETO_CLIENT_ID": SIM_CLIENT_ID,
        "MARKETO_CLIENT_SECRET": SIM_CLIENT_SECRET,
        # The gate's own daily cap on Marketo calls (default 2,500) would turn a long run's lookups into
        # `unverified` denials; like the simulator's rate limit, it is raised so the run measures the check.
        "GATEWAY_MARKETO_DAILY_BUDGET": "100000000",
        # One key sends the whole load; the per-key rate limit (default 600 a minute) would measure itself.
        "GATEWAY_RATE_LIMIT": "off",
    }


def start_server(procs: Processes, name: str, app: str, env: dict) -> tuple[subprocess.Popen, int, float]:
    """`app` under gunicorn (gunicorn_argv) on a free port; returns the process, its port, seconds to ready."""
    port = free_port()
    server = procs.start(name, gunicorn_argv(app, port), env=env)
    return server, port, round(wait_ready(name, port, "/healthz", server, procs), 2)


def turn_check_on(port: int) -> None:
    """The admin's way: PATCH the setting (the gate first tests the Marketo connection)."""
    status, settings = call(port, "PATCH", "/v1/admin/settings", {"marketo_check_enabled": True}, headers=AUTH)
    if status != 200 or not settings.get("marketo_check_enabled"):
        raise BenchError(f"could not turn the Marketo check on: HTTP {status}: {settings}")


def group_send(gate_port: int, sim_port: int, size: int) -> dict:
    addresses = [member_address(i) for i in range(size)]
    body = {"workflow": "group_send",
            "messages": [{"id": "blast", "recipients": [{"email": a} for a in addresses]}]}
    before = sim_stats(sim_port)
    started = time.perf_counter()
    status, answer, answer_bytes = call(gate_port, "POST", "/v1/checks", body, headers=AUTH, timeout=120,
                                        with_size=True)
    wall = time.perf_counter() - started
    after = sim_stats(sim_port)
    if status != 200:
        raise BenchError(f"group send answered HTTP {status}: {str(answer)[:2000]}")
    (result,) = answer["results"]
    expected_dropped = sum(member_unsubscribed(i) for i in range(size))
    via = Counter(r["checked_via"] for r in result["recipients"])
    dropped_reasons = Counter(r["reason_code"] for r in result["recipients"] if r["decision"] == "deny")
    return {
        "recipients": size,
        "wall_s": round(wall, 3),
        "decision": result["decision"],
        "delivered": len(result["deliver_to"]),
        "dropped": size - len(result["deliver_to"]),
        "dropped_expected": expected_dropped,
        "dropped_by_reason": dict(dropped_reasons),
        "checked_via": dict(via),
        "marketo": stats_delta(before, after),
        "marketo_lookups_expected": math.ceil(size / MARKETO_BATCH),
        "request_bytes": len(json.dumps(body, separators=(",", ":"))),
        "answer_bytes": answer_bytes,
    }


def run(args: argparse.Namespace, procs: Processes, tmp: Path) -> dict:
    env = base_env()
    meta = run_meta(args)

    # 1. simulator ---------------------------------------------------------------
    sim, sim_port = start_simulator(procs, env)
    seeded = seed_leads(sim_port, args.leads, args.unsubscribed_every, args.group_size)
    print(f"simulator on :{sim_port}, seeded {seeded}", flush=True)

    # 2. the gate ---------------------------------------------------------------
    db_url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    gate_env = gate_environment(env, db_url, sim_port)
    meta["migrated_with"] = migrate(gate_env, db_url, procs.log_dir)
    gate, gate_port, meta["gate_ready_s"] = start_server(procs, "gate", "app:app", gate_env)
    turn_check_on(gate_port)
    status, sample = call(gate_port, "POST", ENDPOINT, {"client": "outlook", "to": [person_address(0)]}, headers=AUTH)
    if status != 200 or not sample.get("enabled"):
        raise BenchError(f"sanity check failed: HTTP {status}: {sample}")
    print(f"gate on :{gate_port}, check on; sanity answer for {person_address(0)}: "
          f"{sample.get('decision')} / {sample.get('reason_code')}", flush=True)

    # 3. the bare ceiling --------------------------------------------------------
    # Same environment, so gunicorn.conf.py (if any) behaves the same for both servers.
    bare, bare_port, meta["bare_ready_s"] = start_server(procs, "bare", "bench.bare_app:app", gate_env)
    print(f"bare app on :{bare_port}", flush=True)

    # 4. throughput, alternating ---------------------------------------------------
    people = [person_address(i) for i in range(args.leads)]
    bodies = [{"client": "outlook", "to": [address]} for address in people]
    cold = args.leads - args.hot
    weights = [args.hot_share / args.hot] * args.hot + ([(1 - args.hot_share) / cold] * cold if cold else [])
    ports = {"bare": bare_port, "gate": gate_port}
    servers = {"bare": bare, "gate": gate}
    load = dict(concurrency=args.concurrency, load_procs=args.load_procs, env=env, balance=not args.no_balance)

    def load_round(target: str, seconds: float, label: str) -> tuple[dict, dict]:
        before = sim_stats(sim_port)
        result = run_load(procs, target, ports[target], bodies, weights, duration=seconds, seed=label,
                          server=servers[target], others=(sim,), **load)
        return result, stats_delta(before, sim_stats(sim_port))

    warm = {}
    if args.warmup > 0:
        for target in ("bare", "gate"):
            result, marketo = load_round(target, args.warmup, f"warmup-{target}")
            warm[target] = {**summarize([result]), "marketo": marketo}
            print(f"warm-up {target}: {warm[target]['rps']} req/s", flush=True)

    rounds, runs = [], {"bare": [], "gate": []}
    for index in range(args.rounds):
        for target in ("bare", "gate"):
            result, marketo = load_round(target, args.duration, f"round{index}-{target}")
            runs[target].append(result)
            figures = summarize([result])
            rounds.append({"round": index + 1, "target": target, **figures, "marketo": marketo})
            print(f"round {index + 1} {target}: {figures['rps']} req/s, p50 {figures['p50_ms']} ms, "
                  f"p99 {figures['p99_ms']} ms, non-200 {figures['non_200']}, Marketo calls {marketo['total']}",
                  flush=True)

    totals = {target: summarize(runs[target]) for target in ("bare", "gate")}
    gate_marketo = Counter()
    for entry in rounds:
        if entry["target"] == "gate":
            gate_marketo.update({k: entry["marketo"][k] for k in ("token", "leads", "total")})
    totals["gate"]["marketo"] = dict(gate_marketo)
    totals["gate"]["marketo_calls_per_1000_checks"] = (
        round(1000 * gate_marketo["total"] / totals["gate"]["requests"], 2) if totals["gate"]["requests"] else None)
    pairs = []
    for index in range(args.rounds):
        b = next(r for r in rounds if r["round"] == index + 1 and r["target"] == "bare")
        g = next(r for r in rounds if r["round"] == index + 1 and r["target"] == "gate")
        pairs.append({"round": index + 1, "rps": ratio(g["rps"], b["rps"]),
                      "p50": ratio(g["p50_ms"], b["p50_ms"]), "p99": ratio(g["p99_ms"], b["p99_ms"]),
                      "cpu_per_request": ratio(g["server_cpu_ms_per_request"], b["server_cpu_ms_per_request"])})
    ratios = {
        "cpu_per_request": ratio(totals["gate"]["server_cpu_ms_per_request"],
                                 totals["bare"]["server_cpu_ms_per_request"]),
        "rps": ratio(totals["gate"]["rps"], totals["bare"]["rps"]),
        "p50": ratio(totals["gate"]["p50_ms"], totals["bare"]["p50_ms"]),
        "p99": ratio(totals["gate"]["p99_ms"], totals["bare"]["p99_ms"]),
        "per_round": pairs,
    }

    # 5. the 10,000-recipient group send, cold cache ----------------------------------
    print(f"group send of {args.group_size} recipients ...", flush=True)
    group = group_send(gate_port, sim_port, args.group_size)

    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    meta["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    meta["simulator_final_stats"] = sim_stats(sim_port)
    meta["logs"] = str(procs.log_dir)
    return {
        "meta": meta,
        "seeded": seeded,
        "load": {
            "endpoint": f"POST {ENDPOINT}",
            "body": {"client": "outlook", "to": ["person<i>@example.com"]},
            "mix": f"{args.hot_share:.0%} of checks to {args.hot} hot addresses, the rest to the other "
                   f"{cold} seeded ones; every {args.unsubscribed_every}rd/th seeded address unsubscribed",
            "warmup": warm,
            "rounds": rounds,
            "totals": totals,
            "ratio_gate_over_bare": ratios,
        },
        "group_send": group,
    }


def fmt(value, digits=1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(results: dict) -> str:
    load, group, meta = results["load"], results["group_send"], results["meta"]
    args = meta["args"]
    lines = [
        f"Marketo unsubscribe gate: pre-send check benchmark ({meta['started_at']}, {meta['cpus']} CPUs, "
        f"load avg {meta['loadavg_before'][0]} -> {meta['loadavg_after'][0]})",
        f"POST {ENDPOINT}, 1 recipient; {args['concurrency']} keep-alive connections from "
        f"{args['load_procs']} load process(es); {args['rounds']} x {fmt(args['duration'])} s per target, alternating",
        "",
        f"{'run':<12}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'non-200':>8}"
        f"{'srv cpu ms/req':>15}{'cli cpu':>8}{'conns/worker':>13}{'Marketo calls':>14}",
    ]

    def row(label, figures, marketo="-", spread="-"):
        return (f"{label:<12}{fmt(figures['rps']):>8}{fmt(figures['p50_ms'], 2):>8}{fmt(figures['p99_ms'], 2):>8}"
                f"{fmt(figures['max_ms'], 1):>8}{figures['non_200']:>8}"
                f"{fmt(figures['server_cpu_ms_per_request'], 3):>15}{fmt(figures['client_cpu_cores'], 2):>8}"
                f"{spread:>13}{marketo:>14}")

    for entry in load["rounds"]:
        marketo = str(entry["marketo"]["total"]) if entry["target"] == "gate" else "-"
        spread = "+".join(str(n) for n in entry["connections_per_worker"][0]) or "?"
        lines.append(row(f"{entry['target']} #{entry['round']}", entry, marketo, spread))
    gate_total = load["totals"]["gate"]
    lines.append(row("bare (all)", load["totals"]["bare"]))
    lines.append(row("gate (all)", gate_total, str(gate_total["marketo"].get("total", 0))))
    r = load["ratio_gate_over_bare"]
    lines.append(f"{'gate/bare':<12}{fmt(r['rps'], 3):>8}{fmt(r['p50'], 2):>8}{fmt(r['p99'], 2):>8}{'':>16}"
                 f"{fmt(r['cpu_per_request'], 2):>15}")
    per_round = "; ".join(f"#{p['round']}: req/s {fmt(p['rps'], 3)}, cpu/req {fmt(p['cpu_per_request'], 2)}"
                          for p in r["per_round"])
    lines.append(f"  gate/bare per round: {per_round}")
    via = gate_total["checked_via"]
    served = sum(via.values())
    if served:
        shares = ", ".join(f"{k} {100 * v / served:.1f}%" for k, v in sorted(via.items(), key=lambda kv: -kv[1]))
        lines.append(f"  gate verdicts by checked_via: {shares}; decisions {gate_total['decisions']}")
        split = ", ".join(f"{via} p50 {fmt(v['p50_ms'], 2)} / p99 {fmt(v['p99_ms'], 2)} ms"
                          for via, v in gate_total["latency_by_checked_via"].items())
        lines.append(f"  gate latency by checked_via: {split}")
    lines.append(f"  gate Marketo calls in measured rounds: {gate_total['marketo']} "
                 f"({fmt(gate_total['marketo_calls_per_1000_checks'], 2)} per 1,000 checks); "
                 f"simulator CPU {fmt(gate_total['simulator_cpu_s'], 2)} s")
    warm = load["warmup"].get("gate")
    if warm:
        lines.append(f"  (warm-up, not measured: gate {warm['requests']} checks cost {warm['marketo']['total']} "
                     "Marketo calls)")
    statuses = {t: load["totals"][t]["statuses"] for t in ("bare", "gate")}
    if any(k != "200" for s in statuses.values() for k in s):
        lines.append(f"  statuses: {statuses}")
    m = group["marketo"]
    lines += [
        "",
        f"Group send: POST /v1/checks, workflow group_send, {group['recipients']:,} distinct recipients "
        f"({group['request_bytes']:,} bytes; answer {group['answer_bytes']:,} bytes), cold cache",
        f"  wall time        {group['wall_s']:.3f} s",
        f"  decision         {group['decision']}; delivered {group['delivered']:,}, dropped {group['dropped']:,} "
        f"(expected {group['dropped_expected']:,}; by reason {group['dropped_by_reason']})",
        f"  checked_via      {group['checked_via']}",
        f"  Marketo calls    {m['total']} = {m['leads']} lookups + {m['token']} token "
        f"(expected {group['marketo_lookups_expected']} lookups + token calls)"
        + (f"; rejected {m['rejected']}" if m["rejected"] else "") + (f"; errors {m['errors']}" if m["errors"] else ""),
    ]
    return "\n".join(lines)


def run_benchmark(output: Path, log_dir: Path, tmp_prefix: str, run_fn, table_fn, cleanup=None) -> int:
    """The frame both benchmarks share: fresh logs, a temp dir, `run_fn(procs, tmp)`, and a clean-up of every
    server (and `cleanup(tmp)`) however the run ends; then the table printed and the results written."""
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    procs = Processes(log_dir)
    tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix))

    def on_sigterm(signum, _frame):
        print("\nterminated; stopping servers", file=sys.stderr)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        results = run_fn(procs, tmp)
    except BenchError as error:
        print(f"\nbenchmark failed: {error}\n(logs in {log_dir})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; stopping servers", file=sys.stderr)
        return 130
    finally:
        # Finish the clean-up even if asked twice.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        procs.stop_all()
        if cleanup is not None:
            cleanup(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    text = table_fn(results)
    print("\n" + text)
    output.parent.mkdir(parents=True, exist_ok=True)
    results["table"] = text.splitlines()
    output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwritten to {output} (server logs in {log_dir})")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_benchmark(args.output, args.output.parent / "logs", "bench-checks-",
                         lambda procs, tmp: run(args, procs, tmp), table)


if __name__ == "__main__":
    sys.exit(main())
