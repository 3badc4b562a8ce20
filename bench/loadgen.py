"""Closed-loop HTTP load generator: N threads, one keep-alive http.client connection each.

Run by bench_checks.py as a subprocess (one or more per target), never imported by the gate.
Protocol on stdin/stdout, so several load processes start at the same moment:

    stdin : one line of JSON config (see `main`)
    stdout: "ready [ports]"    once every connection is open (the client-side port of each)
    stdin : "reconnect [ports]" (optional, repeatable) replace those connections; answered by "ready [ports]"
    stdin : "go"               start the clock
    stdout: one line of JSON   the results (raw latencies included, so the parent can merge processes)

Instead of a list of bodies, the config may give a `template`: {"body": JSON text holding "{x}", "mode": ...}.
Each request then fills in {x}: with "random", a random integer below "range" (so the addresses are spread
over a whole seeded range rather than a list sent on stdin); with "unique", a token made of the seed, the
thread and a counter, so no address is ever sent twice (a cold cache).

Only the standard library is used, so the client's own cost stays small and predictable.
"""
from __future__ import annotations

import http.client
import itertools
import json
import os
import random
import re
import sys
import threading
import time
from collections import Counter

CHECKED_VIA = re.compile(rb'"checked_via":\s*"([a-z_]+)"')
DECISION = re.compile(rb'"decision":\s*"([a-z]+)"')


class Worker(threading.Thread):
    def __init__(self, index: int, config: dict, bodies: list[bytes], weights: list[float] | None):
        super().__init__(name=f"load-{index}", daemon=True)
        self.host = config["host"]
        self.port = config["port"]
        self.path = config["path"]
        self.headers = {"Content-Type": "application/json", **config.get("headers", {})}
        self.bodies = bodies
        template = config.get("template")
        self.template = template["body"] if template else None
        self.template_mode = template.get("mode", "random") if template else None
        self.template_range = int(template.get("range", 1)) if template else 1
        self.unique_prefix = f"{re.sub(r'[^a-z0-9]+', '-', str(config.get('seed', 0)).lower())}-t{index}n"
        self.counter = 0
        self.cum_weights = list(itertools.accumulate(weights)) if weights else None
        self.rng = random.Random(f"{config.get('seed', 0)}:{index}")
        self.latencies: list[float] = []
        self.statuses: Counter = Counter()
        self.checked_via: Counter = Counter()
        self.latency_by_via: dict[str, list[float]] = {}
        self.decisions: Counter = Counter()
        self.reconnects = 0
        self.last_done = 0.0
        self.conn: http.client.HTTPConnection | None = None
        self.go = None  # threading.Event, set by main
        self.end = 0.0

    def connect(self) -> int:
        """(Re)open this worker's connection; returns its client-side port."""
        if self.conn is not None:
            self.conn.close()
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        self.conn.connect()
        self.local_port = self.conn.sock.getsockname()[1]
        return self.local_port

    def one(self, body: bytes) -> tuple[int, bytes]:
        self.conn.request("POST", self.path, body=body, headers=self.headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.will_close:
            self.connect()
            self.reconnects += 1
        return response.status, data

    def from_template(self) -> bytes:
        if self.template_mode == "unique":
            self.counter += 1
            value = f"{self.unique_prefix}{self.counter}"
        else:
            value = str(self.rng.randrange(self.template_range))
        return self.template.replace("{x}", value).encode()

    def run(self) -> None:
        self.go.wait()
        choices = self.rng.choices
        bodies, cum_weights = self.bodies, self.cum_weights
        clock = time.perf_counter
        while True:
            now = clock()
            if now >= self.end:
                break
            if self.template is not None:
                body = self.from_template()
            elif cum_weights:
                body = choices(bodies, cum_weights=cum_weights)[0]
            else:
                body = bodies[self.rng.randrange(len(bodies))]
            started = clock()
            try:
                status, data = self.one(body)
            except (http.client.HTTPException, OSError):
                # The server closed an idle keep-alive connection, or the request failed: count it, reconnect.
                self.statuses["conn_error"] += 1
                self.reconnects += 1
                try:
                    self.connect()
                except OSError:
                    time.sleep(0.01)  # server gone; avoid a hot loop until the run ends
                continue
            done = clock()
            self.latencies.append(done - started)
            self.last_done = done
            self.statuses[str(status)] += 1
            if status == 200:
                found = CHECKED_VIA.findall(data)
                for via in found:
                    self.checked_via[via.decode()] += 1
                if found:  # latency by what answered the (first) recipient: cache hit or Marketo call
                    self.latency_by_via.setdefault(found[0].decode(), []).append(done - started)
                match = DECISION.search(data)
                if match:
                    self.decisions[match.group(1).decode()] += 1


def main() -> None:
    config = json.loads(sys.stdin.readline())
    # config: host, port, path, headers, concurrency, duration, seed,
    #         bodies (list of JSON values to post), weights (optional, one per body),
    #         template (optional, instead of bodies: see the module's docstring)
    bodies = [json.dumps(body, separators=(",", ":")).encode() for body in config.get("bodies", [])]
    weights = config.get("weights")
    workers = [Worker(i, config, bodies, weights) for i in range(config["concurrency"])]
    for worker in workers:
        worker.connect()
    # The parent may ask for some connections to be replaced, so that they spread evenly over
    # the server's worker processes (a keep-alive connection stays with the worker that accepted it).
    while True:
        print("ready " + json.dumps([w.local_port for w in workers]), flush=True)
        command, _, argument = sys.stdin.readline().strip().partition(" ")
        if command == "reconnect":
            again = set(json.loads(argument))
            for worker in workers:
                if worker.local_port in again:
                    worker.connect()
        elif command == "go":
            break
        else:
            return
    go = threading.Event()
    for worker in workers:
        worker.go = go
        worker.start()
    cpu_before = os.times()
    start = time.perf_counter()
    for worker in workers:
        worker.end = start + config["duration"]
    go.set()
    for worker in workers:
        worker.join()
    cpu_after = os.times()
    finished = max([w.last_done for w in workers] + [start])
    latencies = [lat for w in workers for lat in w.latencies]
    statuses, via, decisions = Counter(), Counter(), Counter()
    for worker in workers:
        statuses.update(worker.statuses)
        via.update(worker.checked_via)
        decisions.update(worker.decisions)
    result = {
        "elapsed": finished - start,
        "requests": len(latencies),
        "statuses": dict(statuses),
        "checked_via": dict(via),
        "decisions": dict(decisions),
        "reconnects": sum(w.reconnects for w in workers),
        "client_cpu": (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system),
        "latencies_us": [round(lat * 1e6) for lat in latencies],
        "latencies_us_by_via": {},
    }
    for worker in workers:
        for via, values in worker.latency_by_via.items():
            result["latencies_us_by_via"].setdefault(via, []).extend(round(lat * 1e6) for lat in values)
    for worker in workers:
        worker.conn.close()
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
