"""The simulator as a command: ``python -m gateway.simulators.marketo --help``."""
from __future__ import annotations

import argparse

from gateway.simulators.marketo.server import start_simulator
from gateway.simulators.marketo.state import SimulatorState, seed_demo
from gateway.simulators.serving import serve_until_signalled


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m gateway.simulators.marketo", description="Marketo Engage simulator"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8101, help="0 = a free port (printed on start)")
    p.add_argument("--seed", choices=["demo", "none"], default="none")
    p.add_argument("--client-id", default="sim-client")
    p.add_argument("--client-secret", default="sim-secret")
    p.add_argument("--token-ttl", type=int, default=3600)
    p.add_argument("--rate-limit-calls", type=int, default=100)
    p.add_argument("--rate-limit-window", type=float, default=20.0)
    p.add_argument("--max-concurrent", type=int, default=10)
    p.add_argument("--daily-quota", type=int, default=50_000)
    p.add_argument("--export-job-seconds", type=float, default=None,
                   help="each Bulk Lead Extract job processes this long (default: done on its 2nd status poll)")
    p.add_argument("--export-filters", default="createdAt",
                   help="comma-separated export filters the subscription has (createdAt,updatedAt,staticListId,smartListId)")
    p.add_argument("--quiet", action="store_true", help="do not log each request")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    state = SimulatorState(
        client_id=args.client_id,
        client_secret=args.client_secret,
        token_ttl=args.token_ttl,
        rate_limit_calls=args.rate_limit_calls,
        rate_limit_window=args.rate_limit_window,
        max_concurrent=args.max_concurrent,
        daily_quota=args.daily_quota,
        export_job_seconds=args.export_job_seconds,
        export_filters_supported=[name.strip() for name in args.export_filters.split(",") if name.strip()],
    )
    if args.seed == "demo":
        seed_demo(state)
    serve_until_signalled(
        lambda: start_simulator(state, args.host, args.port, quiet=args.quiet), "Marketo simulator"
    )
