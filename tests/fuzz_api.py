"""The long fuzz run: the same schemathesis test as CI's short one, with many more examples per operation.

    .venv/bin/python tests/fuzz_api.py --examples 500 [--postgres]

Starts nothing by hand: the test's fixtures serve the gate over HTTP against the Marketo simulator, on a
temporary SQLite database (or the local PostgreSQL with --postgres). Not collected by pytest (no test_ prefix).
"""
import argparse
import os
import sys
from pathlib import Path

import pytest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=500, help="examples per API operation")
    parser.add_argument("--postgres", action="store_true", help="run on postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    os.environ["GATEWAY_FUZZ_EXAMPLES"] = str(args.examples)
    if args.postgres:
        os.environ["GATEWAY_TEST_DATABASE_URL"] = "postgresql://postgres@127.0.0.1:5432/test"
    root = Path(__file__).resolve().parent.parent
    os.chdir(root)
    return pytest.main(["-q", "-p", "no:logging", "--hypothesis-show-statistics",
                        "tests/test_openapi.py", "-k", "fuzzed"])


if __name__ == "__main__":
    sys.exit(main())
