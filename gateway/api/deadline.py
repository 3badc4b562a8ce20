"""When a request started, for its deadline: when it reached the platform, not when a thread got to it.

Heroku's router stamps each request with `X-Request-Start`, the time it received it, in milliseconds since
the epoch (other routers send microseconds, or nginx's `t=<seconds>.<ms>`). Time spent queued before the
gate reads the request is the caller's time too, so the check deadline counts from there. A stamp that is
missing, unreadable or implausible (from the future, or older than the platform's own 30 s timeout) is
ignored, and the deadline counts from the request's arrival at this process, stamped by `StampArrival`
before anything else runs.
"""
from __future__ import annotations

import time

from flask import Flask

ARRIVED_AT = "gateway.arrived_at"  # environ key: (time.monotonic(), time.time()) when the process got it
REQUEST_START_HEADER = "HTTP_X_REQUEST_START"
OLDEST_PLAUSIBLE = 30.0  # seconds: Heroku's router gives up on a request after 30 s
CLOCK_SKEW = 1.0  # seconds a stamp may lie in the future (the router's clock is not ours)


class StampArrival:
    """WSGI middleware: notes when the request reached this process, before routing, auth or rate limits."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        environ[ARRIVED_AT] = (time.monotonic(), time.time())
        return self.app(environ, start_response)


def init_app(app: Flask) -> None:
    app.wsgi_app = StampArrival(app.wsgi_app)


def parse_request_start(raw: str | None) -> float | None:
    """Epoch seconds from `X-Request-Start` in ms, µs, s or `t=` forms; None when not a number."""
    if not raw:
        return None
    text = raw.strip()
    if text.startswith("t="):
        text = text[2:]
    try:
        value = float(text)
    except ValueError:
        return None
    if not value > 0 or value != value or value == float("inf"):
        return None
    if value >= 1e14:  # microseconds (1.7e15 today)
        return value / 1e6
    if value >= 1e11:  # milliseconds (1.7e12 today), Heroku's form
        return value / 1e3
    return value  # seconds (1.7e9 today), nginx's `t=` form


def request_started(environ: dict) -> float:
    """The `time.monotonic()` at which the caller's request reached the platform (or, failing that, us)."""
    arrived_monotonic, arrived_wall = environ.get(ARRIVED_AT) or (time.monotonic(), time.time())
    platform_start = parse_request_start(environ.get(REQUEST_START_HEADER))
    if platform_start is None:
        return arrived_monotonic
    queued = arrived_wall - platform_start
    if not -CLOCK_SKEW <= queued <= OLDEST_PLAUSIBLE:
        return arrived_monotonic
    return arrived_monotonic - max(queued, 0.0)
