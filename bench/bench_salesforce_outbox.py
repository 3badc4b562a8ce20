"""Benchmark: the Salesforce outbox. One multi-select send of N denied recipients, then the worker's drain.

    .venv/bin/python bench/bench_salesforce_outbox.py                  # 1,000 and 10,000 recipients
    .venv/bin/python bench/bench_salesforce_outbox.py --sizes 2000     # other sizes

Everything runs in this process on 127.0.0.1: the Salesforce simulator over HTTPS (its own CA, verified by the
gate), a fresh SQLite database (or DATABASE_URL), the gate's check answered from a fresh mirror. Three quarters
of the recipients are Contacts, one quarter Leads. Printed per size: Salesforce calls by kind and per 1,000
blocked recipients, the drain's wall time and Tasks per second. Figures depend on the machine: compare runs
on one machine, not against a number.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway import create_app  # noqa: E402
from gateway.config import ApiKeySpec, GateConfig  # noqa: E402
from gateway.salesforce.outbox import OutboxDrain  # noqa: E402
from gateway.simulators.salesforce import (  # noqa: E402
    CLIENT_ID, CLIENT_SECRET, SalesforceSimState, start_salesforce_simulator,
)
from gateway.store import utcnow  # noqa: E402
from gateway.store.db import make_engine, upgrade  # noqa: E402

KEY = "bench-key"


def run(size: int, database_url: str) -> dict:
    state = SalesforceSimState()
    with start_salesforce_simulator(state) as org:
        os.environ["REQUESTS_CA_BUNDLE"] = org.ca_path
        addresses = [f"b{i}@example.com" for i in range(size)]
        for i, address in enumerate(addresses):
            state.add("Contact" if i % 4 else "Lead", {"LastName": "B", "Email": address})
        engine = make_engine(database_url)
        upgrade(engine)
        config = GateConfig(database_url=database_url, secret_key="bench", api_keys=(ApiKeySpec("b", "admin", KEY),),
                            max_recipients=max(size, 10_000), max_content_length=64 * 1024 * 1024,
                            salesforce_login_url=org.base_url, salesforce_client_id=CLIENT_ID,
                            salesforce_client_secret=CLIENT_SECRET)
        app = create_app(config)
        gate = app.extensions["gate"]
        gate.store.settings.update({"marketo_check_enabled": True}, updated_by="bench")
        gate.store.sync.acquire_lease("bench", 600)
        gate.store.mirror.apply_changes("bench", unsubscribed=addresses,
                                        state={"load_status": "complete", "last_success_at": utcnow()})
        body = {"workflow": "multi_select_send", "records": [{"ToAddress": a} for a in addresses]}
        started = time.perf_counter()
        response = app.test_client().post("/v1/hooks/salesforce", json=body, headers={"Authorization": f"Bearer {KEY}"})
        check_seconds = time.perf_counter() - started
        assert response.status_code == 200, response.get_json()
        state.calls.clear()
        started = time.perf_counter()
        rounds = 0
        while gate.store.outbox.summary().pending:
            report = OutboxDrain(gate.store, gate.salesforce, max_seconds=3600).run()
            rounds += 1
            assert report.error is None, report.error
        drain_seconds = time.perf_counter() - started
        tasks = len(state.list("Task"))
        engine.dispose()
        gate.store.engine.dispose()
    calls = {k: state.calls[k] for k in ("token", "query", "query_more", "create") if state.calls[k]}
    total = sum(calls.values())
    return {"size": size, "tasks": tasks, "calls": calls, "calls_total": total,
            "calls_per_1000": round(total * 1000 / size, 1), "drain_s": round(drain_seconds, 2),
            "tasks_per_s": round(tasks / drain_seconds), "check_s": round(check_seconds, 2), "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    args = parser.parse_args()
    print(f"{'recipients':>10} {'Tasks':>7} {'calls':>6} {'per 1,000':>9} {'drain s':>8} {'Tasks/s':>8} "
          f"{'check s':>8}  calls by kind")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as folder:
            url = os.environ.get("DATABASE_URL") or f"sqlite:///{folder}/bench.sqlite3"
            result = run(size, url)
        print(f"{result['size']:>10,} {result['tasks']:>7,} {result['calls_total']:>6} {result['calls_per_1000']:>9} "
              f"{result['drain_s']:>8} {result['tasks_per_s']:>8} {result['check_s']:>8}  {result['calls']}",
              flush=True)


if __name__ == "__main__":
    main()
