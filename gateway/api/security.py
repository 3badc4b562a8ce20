"""Who gets in, and what every answer carries: CORS for browser add-ins, rate limits per caller, safe headers.

`init_app(app, config)` wires it all into an app; create_app calls it once the blueprints are registered.

- CORS (Flask-Cors): only the exact origins in GATEWAY_CORS_ORIGINS, only on the endpoints a browser add-in
  or web page calls (`CORS_PATHS`), only POST with `Authorization` and `Content-Type`, never cookies. A
  preflight (`OPTIONS`) is answered by Flask without running the view, so it needs no key and checks nothing.
- Rate limits (`limits`, `CallerRateLimiter`): one budget per caller key across all endpoints
  (GATEWAY_RATE_LIMIT), counted in Redis when REDIS_URL is set so every process shares it, in the process
  otherwise. Over it: `429` `rate_limited` with `Retry-After`, before the view runs, so nothing is checked or
  written. When Redis fails, each process counts alone; a request caught in the failure is let in unlimited,
  never a 500.
- Headers: nosniff, no framing, no referrer, no caching, a locked-down CSP on everything but HTML pages
  (which bring their own), HSTS on HTTPS. Behind a proxy (GATEWAY_TRUST_PROXY), werkzeug's ProxyFix makes
  `X-Forwarded-For`/`-Proto` the client's address and scheme.
"""
from __future__ import annotations

import logging
import math
import re
import threading
import time

from flask import Flask, request
from flask_cors import CORS
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.middleware.proxy_fix import ProxyFix

from gateway.api import limiter_storage  # registers gate-memory://
from gateway.api.auth import request_caller
from gateway.api.errors import error_response
from gateway.config import GateConfig
from gateway.metrics import count_rate_limited

log = logging.getLogger(__name__)

CORS_PATHS = ("/v1/checks", "/v1/hooks/email-client")  # browser callers only: not Salesforce, not admin
CORS_ALLOW_HEADERS = ("Authorization", "Content-Type")
CORS_EXPOSE_HEADERS = ("Retry-After",)  # so an add-in can read how long to wait after a 429
CORS_MAX_AGE = 7200  # seconds a browser may reuse a preflight (Chromium's own cap)

REDIS_TIMEOUT = 0.5  # seconds; a slow Redis must not eat the caller's deadline (then: counted in-process)
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
PAGE_FALLBACK_CSP = "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"  # an HTML page that set none
HSTS = "max-age=31536000"
# On every answer that did not set its own: (lower-cased name, name, value).
DEFAULT_HEADERS = (
    ("x-content-type-options", "X-Content-Type-Options", "nosniff"),
    ("x-frame-options", "X-Frame-Options", "DENY"),
    ("referrer-policy", "Referrer-Policy", "no-referrer"),
    ("cache-control", "Cache-Control", "no-store"),
)


def init_app(app: Flask, config: GateConfig) -> None:
    # Inside ProxyFix, so HSTS follows the scheme it found.
    app.wsgi_app = SecureHeaders(app.wsgi_app, vary_origin_on=CORS_PATHS if config.cors_origins else ())
    if config.trust_proxy_hops:
        hops = config.trust_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    if config.cors_origins:
        init_cors(app, config.cors_origins)
    if config.rate_limit:
        init_rate_limits(app, config)


# --- CORS ---------------------------------------------------------------------------------------------------


def init_cors(app: Flask, origins: tuple[str, ...]) -> None:
    # Compiled and anchored, so an origin is matched exactly and never read as a pattern by Flask-Cors.
    exact = [re.compile(re.escape(origin) + r"\Z", re.IGNORECASE) for origin in origins]
    CORS(
        app,
        resources={path: {} for path in CORS_PATHS},
        origins=exact,
        methods=["POST", "OPTIONS"],
        allow_headers=list(CORS_ALLOW_HEADERS),
        expose_headers=list(CORS_EXPOSE_HEADERS),
        supports_credentials=False,
        max_age=CORS_MAX_AGE,
        always_send=False,  # no Origin header, no CORS headers (and the allow-list is never listed)
        send_wildcard=False,
        vary_header=True,
    )


# --- rate limits --------------------------------------------------------------------------------------------


def caller_identity() -> str:
    """The rate-limit key: the caller key's name when the request carries a known key, else the client address.

    The limiter counts before the view runs, before `require` sets `g.principal`, so the key is looked up
    here (auth.request_caller, which `require` then asks again for free). An unknown key counts against the
    address it comes from, so guessing keys is limited too. This never raises: a database error is left for
    `require` to answer (503).
    """
    try:
        _, principal = request_caller()
    except SQLAlchemyError:
        principal = None
    return f"key:{principal.name}" if principal is not None else f"addr:{request.remote_addr or 'unknown'}"


def _not_limited() -> bool:
    # A request no view answers (404, 405) is not counted, nor a preflight (it carries no key and does no work),
    # nor the platform's health check.
    current = request._get_current_object()  # one context lookup, not one per attribute (the check path)
    endpoint = current.endpoint
    return endpoint is None or endpoint.startswith("health.") or current.method == "OPTIONS"


class CallerRateLimiter:
    """One budget per caller across every endpoint (GATEWAY_RATE_LIMIT), counted by `limits`' fixed windows.

    Flask-Limiter (built on the same `limits`) did this, but resolved its decorated, blueprint and default
    limits and their exemptions on every request: about 0.25 ms of CPU per check, as much as the rest of the
    gate's own work. The gate has only this one application-wide budget, so it counts it directly, under the
    keys Flask-Limiter used (`LIMITER/<prefix>/<caller>/global/...`: counts carry over a deploy), with its
    fallback:

    - Redis fails while it was answering: from then on this process counts alone, in memory, and asks Redis
      again after 1, 2, 4 ... 32 s (then from 1 s again) until it answers.
    - A request still talking to a Redis another request already found failing is let in unlimited, counted in
      `fail_opens` (for the metrics) and logged once per outage: a rate limit protects the gate; it must not
      become the reason a check is not run, nor a 500.
    """

    SCOPE = "global"  # Flask-Limiter's scope for an application-wide limit
    MAX_PROBE_EXPONENT = 5

    def __init__(self, rate_limit: str, storage_uri: str, storage_options: dict, key_prefix: str):
        self.limits = sorted(parse_many(rate_limit))  # shortest window first, as Flask-Limiter counted them
        self.key_prefix = (key_prefix,) if key_prefix else ()  # as Flask-Limiter: no empty key segment
        self.storage = storage_from_string(storage_uri, **storage_options)
        self.counter = FixedWindowRateLimiter(self.storage)
        shared = not isinstance(self.storage, MemoryStorage)
        self.in_process = FixedWindowRateLimiter(limiter_storage.SweepingMemoryStorage()) if shared else None
        self.storage_dead = False  # counting in process until the storage answers a probe
        self.storage_failing = False  # a request was let in unlimited since the storage last answered
        self.fail_opens = 0  # requests let in unlimited because the storage failed, since the process started
        self._lock = threading.Lock()
        self._probed_at = time.time()
        self._probes = 0

    def over_limit(self, caller: str) -> tuple[RateLimitItem, float | None] | None:
        """Count one request of `caller`. Over a limit: that limit and when its window ends (epoch seconds;
        None when the storage cannot say). Never raises."""
        counter = self._live_counter()
        args = (*self.key_prefix, caller, self.SCOPE)
        try:
            for limit in self.limits:
                if not counter.hit(limit, *args):
                    return limit, self._window_end(counter, limit, args)
        except Exception as error:
            if counter is self.counter and self.in_process is not None and not self.storage_dead:
                self.storage_dead = True
                log.warning("rate-limit storage unreachable (%s): this process counts alone until it answers",
                            type(error).__name__)
                return self.over_limit(caller)
            self._record_fail_open(error)
            return None
        if counter is self.counter and self.storage_failing:
            with self._lock:
                self.storage_failing = False
            log.info("rate-limit storage answers again: limits are enforced")
        return None

    def _live_counter(self) -> FixedWindowRateLimiter:
        if not self.storage_dead:
            return self.counter
        if self._probe_due() and self.storage.check():
            self.storage_dead = False
            self._probes = 0
            log.info("rate-limit storage answers again: every process counts in it")
            return self.counter
        return self.in_process

    def _probe_due(self) -> bool:
        now = time.time()
        if self._probes > self.MAX_PROBE_EXPONENT:
            self._probes = 0
        if now - self._probed_at <= 2 ** self._probes:
            return False
        self._probed_at = now
        self._probes += 1
        return True

    @staticmethod
    def _window_end(counter: FixedWindowRateLimiter, limit: RateLimitItem, args: tuple) -> float | None:
        try:
            return counter.get_window_stats(limit, *args).reset_time
        except Exception:  # the storage failed between counting and answering: a guess beats a 500
            log.warning("could not read the rate-limit window; answering Retry-After: 1")
            return None

    def _record_fail_open(self, error: Exception) -> None:
        with self._lock:
            self.fail_opens += 1
            first = not self.storage_failing
            self.storage_failing = True
        if first:
            log.warning("rate-limit storage failed (%s): requests pass unlimited until it answers", type(error).__name__)


def rate_limit_fail_opens(app: Flask) -> int:
    """Requests this process let through unlimited because the rate-limit storage failed (0: no limiter)."""
    limiter = app.extensions.get("gate_limiter")
    return limiter.fail_opens if limiter is not None else 0


def init_rate_limits(app: Flask, config: GateConfig) -> None:
    if config.redis_url:
        storage_uri = config.redis_url
        storage_options = {"socket_connect_timeout": REDIS_TIMEOUT, "socket_timeout": REDIS_TIMEOUT}
    else:
        storage_uri, storage_options = "gate-memory://", {}  # gateway/api/limiter_storage.py
    limiter = CallerRateLimiter(config.rate_limit, storage_uri, storage_options, config.rate_limit_key_prefix)
    app.extensions["gate_limiter"] = limiter

    @app.before_request
    def _count_request():
        """Over the limit: 429 before the view runs, so nothing is checked or written."""
        if _not_limited():
            return None
        over = limiter.over_limit(caller_identity())
        if over is None:
            return None
        limit, window_end = over
        count_rate_limited()
        wait = retry_after_seconds(window_end)
        return error_response(
            429, "rate_limited",
            f"Too many requests from this caller (limit: {limit}); try again in {wait} s.",
            headers={"Retry-After": str(wait)},
        )


def retry_after_seconds(window_end: float | None) -> int:
    if window_end is None:
        return 1
    return max(1, math.ceil(window_end - time.time()))


# --- headers ------------------------------------------------------------------------------------------------


class SecureHeaders:
    """WSGI middleware: adds the headers above to every answer that did not set its own, as it starts.

    Every answer passes here, errors included, whatever answered it. Not an after-request hook: there each
    header went through werkzeug's Headers twice (added, then copied for the answer), and the hook through
    Flask's per-request dispatch, about 6 µs of a check; here the answer's header list is extended once.
    """

    def __init__(self, app, vary_origin_on: tuple[str, ...] = ()):
        self.app = app
        self.vary_origin_on = vary_origin_on  # paths whose CORS headers depend on the Origin asked from

    def __call__(self, environ, start_response):
        def start_with_secure_headers(status, headers, exc_info=None):
            add_secure_headers(headers, environ, self.vary_origin_on)
            return start_response(status, headers, exc_info)

        return self.app(environ, start_with_secure_headers)


def add_secure_headers(headers: list[tuple[str, str]], environ: dict, vary_origin_on: tuple[str, ...] = ()) -> None:
    present = {name.lower(): value for name, value in headers}
    headers.extend((name, value) for lower, name, value in DEFAULT_HEADERS if lower not in present)
    # An HTML page (the docs) sets the policy its scripts and styles need; all else is data and may load nothing.
    if "content-security-policy" not in present:
        mimetype = present.get("content-type", "").split(";", 1)[0].strip().lower()
        is_page = mimetype == "text/html" and environ.get("REQUEST_METHOD") != "OPTIONS"
        headers.append(("Content-Security-Policy", PAGE_FALLBACK_CSP if is_page else API_CSP))
    if environ.get("wsgi.url_scheme") in ("https", "wss") and "strict-transport-security" not in present:
        headers.append(("Strict-Transport-Security", HSTS))
    if vary_origin_on and "/" + environ.get("PATH_INFO", "").lstrip("/") in vary_origin_on:
        _vary_on_origin(headers)  # the CORS headers depend on the Origin asked from: no cache may mix them


def _vary_on_origin(headers: list[tuple[str, str]]) -> None:
    for i, (name, value) in enumerate(headers):
        if name.lower() == "vary":
            if "origin" in {part.strip().lower() for part in value.split(",")}:
                return
            headers[i] = (name, f"{value}, Origin" if value.strip() else "Origin")
            return
    headers.append(("Vary", "Origin"))
