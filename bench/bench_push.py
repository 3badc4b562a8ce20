"""Benchmark: Marketo's push (POST /v1/hooks/marketo) under the project's gunicorn, against the simulator.

    .venv/bin/python bench/bench_push.py                # 500 pushes, then 50 push → check round trips
    .venv/bin/python bench/bench_push.py --pushes 2000

It measures what the integration guide promises Marketo, which does not retry a webhook: how long a push
takes to answer (one keep-alive connection, one push after another, as a smart campaign's flow sends them),
and, for pushed unsubscribes, how long until a check of the address is denied from the mirror, with how
many Marketo calls (it should be none). The gate runs as in production (`gunicorn app:app`, the repository's
gunicorn.conf.py, 2 gthread workers), on a fresh SQLite database; the mirror is not loaded, so without the
push every check would be a live lookup. Figures go to bench/results/push.json.
"""
from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_checks, also when imported from elsewhere

from bench_checks import (  # noqa: E402  (after the path is set)
    AUTH,
    ROOT,
    BenchError,
    Processes,
    base_env,
    call,
    gate_environment,
    migrate,
    percentile,
    run_benchmark,
    sim_stats,
    start_server,
    start_simulator,
    turn_check_on,
)

DEADLINE = 5.0  # seconds the guide allows from a push to a denial


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=500, help="pushes timed one after another (500)")
    parser.add_argument("--round-trips", type=int, default=50, help="push then check, timed to the denial (50)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "push.json")
    return parser.parse_args(argv)


def timed_pushes(port: int, count: int, prefix: str) -> list[float]:
    """Milliseconds per push, on one keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {**AUTH, "Content-Type": "application/json"}
    took = []
    try:
        for i in range(count):
            body = json.dumps({"email": f"{prefix}{i}@example.com", "unsubscribed": "true", "leadId": str(i)})
            started = time.perf_counter()
            connection.request("POST", "/v1/hooks/marketo", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            took.append((time.perf_counter() - started) * 1000)
            if response.status != 200 or not json.loads(answer).get("applied"):
                raise BenchError(f"push {i} answered HTTP {response.status}: {answer[:300]!r}")
    finally:
        connection.close()
    return took


def push_to_denial(port: int, address: str) -> float:
    """Seconds from sending a push to the first check of the address that is denied from the mirror."""
    started = time.monotonic()
    status, answer = call(port, "POST", "/v1/hooks/marketo", {"email": address, "unsubscribed": "yes"}, headers=AUTH)
    if status != 200:
        raise BenchError(f"push answered HTTP {status}: {answer}")
    while True:
        status, answer = call(port, "POST", "/v1/hooks/email-client", {"client": "outlook", "to": [address]},
                              headers=AUTH)
        recipient = answer["recipients"][0] if status == 200 else {}
        if (recipient.get("decision"), recipient.get("checked_via")) == ("deny", "mirror"):
            return time.monotonic() - started
        if time.monotonic() - started > DEADLINE:
            raise BenchError(f"{address} still {recipient or answer} {DEADLINE:.0f} s after its push")
        time.sleep(0.01)  # poll interval, bounded by the deadline above


def summary_ms(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"count": len(ordered), "p50": round(percentile(ordered, 50), 2), "p95": round(percentile(ordered, 95), 2),
            "p99": round(percentile(ordered, 99), 2), "max": round(ordered[-1], 2)}


def run(args: argparse.Namespace, procs: Processes, tmp: Path) -> dict:
    env = base_env()
    _sim, sim_port = start_simulator(procs, env)
    db_url = f"sqlite:///{tmp / 'gate.sqlite3'}"
    gate_env = gate_environment(env, db_url, sim_port)
    migrate(gate_env, db_url, procs.log_dir)
    _gate, port, ready = start_server(procs, "gate", "app:app", gate_env)
    turn_check_on(port)
    timed_pushes(port, 20, "warmup")  # unmeasured
    pushes = summary_ms(timed_pushes(port, args.pushes, "pushed"))
    calls_before = sim_stats(port=sim_port)["rest_calls"]
    trips = [push_to_denial(port, f"trip{i}@example.com") * 1000 for i in range(args.round_trips)]
    return {"gate_ready_seconds": ready, "push_ms": pushes,
            "push_to_denial_ms": summary_ms(trips),
            "marketo_calls_during_round_trips": sim_stats(port=sim_port)["rest_calls"] - calls_before}


def table(results: dict) -> str:
    push, trip = results["push_ms"], results["push_to_denial_ms"]
    return "\n".join([
        "                      count     p50     p95     p99     max  (ms)",
        f"push answered        {push['count']:>6} {push['p50']:>7} {push['p95']:>7} {push['p99']:>7} {push['max']:>7}",
        f"push → deny (mirror) {trip['count']:>6} {trip['p50']:>7} {trip['p95']:>7} {trip['p99']:>7} {trip['max']:>7}",
        f"Marketo calls during the push → deny round trips: {results['marketo_calls_during_round_trips']}",
    ])


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_benchmark(args.output, args.output.parent / "logs", "bench-push-",
                         lambda procs, tmp: run(args, procs, tmp), table)


if __name__ == "__main__":
    sys.exit(main())
