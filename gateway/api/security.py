"""Who gets in, and what every answer carries: CORS for browser add-ins, rate limits per caller, safe headers.

`init_app(app, config)` wires it all into an app; create_app calls it once the blueprints are registered.

- CORS (Flask-Cors): only the exact origins in GATEWAY_CORS_ORIGINS, only on the endpoints a browser add-in
  or web page calls (`CORS_PATHS`), only POST with `Authorization` and `Content-Type`, never cookies. A
  preflight (`OPTIONS`) is answered by Flask without running the view, so it needs no key and checks nothing.
- Rate limits (Flask-Limiter): one budget per caller key across all endpoints (GATEWAY_RATE_LIMIT), counted
  in Redis when REDIS_URL is set so every process shares it, in the process otherwise. Over it: `429`
  `rate_limited` with `Retry-After`, before the view runs, so nothing is checked or written. When the
  storage fails (Redis down or frozen), the request is let in unlimited (`FailOpenLimiter`), never a 500.
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

from flask import Flask, g, request
from flask_cors import CORS
from flask_limiter import Limiter, RequestLimit
from flask_limiter.errors import RateLimitExceeded
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.middleware.proxy_fix import ProxyFix

from gateway.api import limiter_storage  # noqa: F401  (registers gate-memory://)
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
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def init_app(app: Flask, config: GateConfig) -> None:
    if config.trust_proxy_hops:
        hops = config.trust_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    if config.cors_origins:
        init_cors(app, config.cors_origins)
    if config.rate_limit:
        init_rate_limits(app, config)
    vary_paths = CORS_PATHS if config.cors_origins else ()
    app.after_request(lambda response: secure_headers(response, vary_origin_on=vary_paths))


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

    Flask-Limiter counts before the view runs, before `require` sets `g.principal`, so the key is looked up
    here the same way (auth.authenticate). An unknown key counts against the address it comes from, so
    guessing keys is limited too. This never raises: a database error is left for `require` to answer (503).
    """
    cached = g.get("_rate_limit_identity")
    if cached:
        return cached
    from gateway.api.auth import authenticate, bearer_key

    principal = g.get("principal")
    if principal is None and (key := bearer_key()) is not None:
        try:
            principal = authenticate(key)
        except SQLAlchemyError:
            principal = None
    identity = f"key:{principal.name}" if principal is not None else f"addr:{request.remote_addr or 'unknown'}"
    g._rate_limit_identity = identity
    return identity


def _not_limited() -> bool:
    # A preflight carries no key and does no work; the health check is the platform's.
    return request.method == "OPTIONS" or request.blueprint == "health"


class FailOpenLimiter(Limiter):
    """Flask-Limiter that lets a request through when its storage fails, rather than answering 500.

    Flask-Limiter falls back to counting in memory when Redis fails, but only the request that noticed
    first: others already talking to a frozen or dying Redis raise. A rate limit protects the gate; it
    must not become the reason a check is not run. So any storage error lets that request in, counted in
    `fail_opens` (for the metrics) and logged once per outage.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fail_opens = 0  # requests let in unlimited because the storage failed, since the process started
        self.storage_failing = False
        self._fail_open_lock = threading.Lock()

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        try:
            super()._check_request_limit(callable_name, in_middleware)
        except RateLimitExceeded:
            raise
        except Exception as error:
            self._record_fail_open(error)
        else:
            if self.storage_failing and not self._storage_dead:
                with self._fail_open_lock:
                    self.storage_failing = False
                log.info("rate-limit storage answers again: limits are enforced")

    def _record_fail_open(self, error: Exception) -> None:
        with self._fail_open_lock:
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
    limiter = FailOpenLimiter(
        caller_identity,
        application_limits=[config.rate_limit],  # one budget per caller, shared by every endpoint
        storage_uri=storage_uri,
        storage_options=storage_options,
        strategy="fixed-window",
        key_prefix=config.rate_limit_key_prefix,
        headers_enabled=False,  # X-RateLimit-* would cost a storage round trip on every answer
        in_memory_fallback_enabled=True,  # Redis down: each process counts alone rather than failing checks
    )
    limiter.request_filter(_not_limited)
    limiter.init_app(app)
    app.extensions["gate_limiter"] = limiter

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(error: RateLimitExceeded):
        count_rate_limited()
        wait = retry_after_seconds(limiter.current_limit)
        return error_response(
            429, "rate_limited",
            f"Too many requests from this caller (limit: {error.description}); try again in {wait} s.",
            headers={"Retry-After": str(wait)},
        )


def retry_after_seconds(limit: RequestLimit | None) -> int:
    if limit is None:
        return 1
    try:
        reset_at = limit.window[0]
    except Exception:  # the storage failed between counting and answering: a guess beats a 500
        log.warning("could not read the rate-limit window; answering Retry-After: 1")
        return 1
    return max(1, math.ceil(reset_at - time.time()))


# --- headers ------------------------------------------------------------------------------------------------


def secure_headers(response, vary_origin_on: tuple[str, ...] = ()):
    headers = response.headers
    present = {name.lower() for name, _ in headers}  # one pass: a miss in Headers costs an exception per name
    for name, value in SECURITY_HEADERS.items():
        if name.lower() not in present:
            headers.add(name, value)
    if "cache-control" not in present:
        headers.add("Cache-Control", "no-store")
    # An HTML page (the docs) sets the policy its scripts and styles need; all else is data and may load nothing.
    if "content-security-policy" not in present:
        is_page = response.mimetype == "text/html" and request.method != "OPTIONS"
        headers.add("Content-Security-Policy", PAGE_FALLBACK_CSP if is_page else API_CSP)
    if request.is_secure and "strict-transport-security" not in present:
        headers.add("Strict-Transport-Security", HSTS)
    if request.path in vary_origin_on:
        response.vary.add("Origin")  # the CORS headers depend on the Origin asked from: no cache may mix them
    return response
