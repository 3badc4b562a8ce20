"""The long fuzz run: CI's schemathesis test (tests/test_openapi.py) with many more examples per operation.

    .venv/bin/python tests/fuzz_api.py --examples 500 [--seed N] [--postgres | --database-url URL]

It starts everything itself, through the test's fixtures: the Marketo simulator and the gate, each served
over real HTTP on a free localhost port, the gate on a temporary SQLite database (or the local PostgreSQL
with --postgres) with the check on. Every generated request must get no 5xx, an answer as the spec says
(status, content type, body), and no error answer that changed the blocked-sends log or the settings.
Prints, per operation, how many requests got which status, then the failures (reproducible with curl).

Not collected by pytest: the file name has no test_ prefix, and `__test__ = False` below.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
__test__ = False
FUZZ_TEST = "test_fuzzed_requests_get_no_5xx_answers_that_match_the_spec_and_errors_change_nothing"
LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


class Outcomes:
    """A pytest plugin that keeps each operation's outcome and the first lines of its failure."""

    def __init__(self) -> None:
        self.outcome: dict[str, str] = {}
        self.failure: dict[str, str] = {}

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "call" or report.outcome != "passed":
            operation = report.nodeid.partition("[")[2].rstrip("]") or report.nodeid
            self.outcome[operation] = report.outcome
            if report.failed:
                self.failure[operation] = str(report.longrepr)


def _status_order(item: tuple[str, int]) -> tuple[bool, str]:
    return (not item[0].isdigit(), item[0])  # this operation's own method first, then probes with other methods


def summary(answered, outcomes: Outcomes, seconds: float) -> str:
    by_operation: dict[str, dict[str, int]] = defaultdict(dict)
    for (operation, status), count in answered.items():
        by_operation[operation][status] = count
    lines = ["", f"{'operation':34} {'requests':>8}  {'result':7} statuses"]
    for operation in sorted(set(by_operation) | set(outcomes.outcome)):
        statuses = by_operation.get(operation, {})
        shown = ", ".join(f"{status}×{count}" for status, count in sorted(statuses.items(), key=_status_order))
        lines.append(f"{operation:34} {sum(statuses.values()):8}  {outcomes.outcome.get(operation, '?'):7} {shown}")
    total = sum(answered.values())
    failed = sorted(op for op, outcome in outcomes.outcome.items() if outcome == "failed")
    lines.append(f"\n{total} requests in {seconds:.0f} s; {len(failed)} of {len(outcomes.outcome)} operations failed.")
    for operation in failed:
        text = outcomes.failure[operation]
        lines.append(f"\n--- {operation}\n{text[:4000]}{' …' if len(text) > 4000 else ''}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=500, help="examples per API operation (default 500)")
    parser.add_argument("--seed", type=int, help="hypothesis seed (default: derandomized, as in CI)")
    parser.add_argument("--postgres", action="store_true", help=f"run on {LOCAL_POSTGRES} instead of SQLite")
    parser.add_argument("--database-url", help="run on this database (its tables are dropped and made afresh)")
    args = parser.parse_args()

    os.environ["GATEWAY_FUZZ_EXAMPLES"] = str(args.examples)
    pytest_args = ["-q", "-p", "no:cacheprovider", "-p", "no:logging", "--tb=short",
                   f"tests/test_openapi.py::{FUZZ_TEST}"]
    if args.seed is not None:
        os.environ["GATEWAY_FUZZ_SEED"] = str(args.seed)
        pytest_args.append(f"--hypothesis-seed={args.seed}")
    if args.postgres or args.database_url:
        os.environ["GATEWAY_TEST_DATABASE_URL"] = args.database_url or LOCAL_POSTGRES
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))

    import pytest

    outcomes = Outcomes()
    started = time.monotonic()
    code = pytest.main(pytest_args, plugins=[outcomes])
    seconds = time.monotonic() - started
    module = sys.modules.get("tests.test_openapi")
    print(summary(module.ANSWERED if module else {}, outcomes, seconds))
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
