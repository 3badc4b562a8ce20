"""The Marketo unsubscribe gate: a pre-send check between sales reps and people who unsubscribed."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flask import Flask

from gateway.budget import CallBudget
from gateway.cache import TTLCache
from gateway.checks import CheckService
from gateway.config import GateConfig, load_config
from gateway.marketo.breaker import CircuitBreaker, SharedCircuit
from gateway.marketo.interfaces import MarketoService, UnconfiguredMarketo
from gateway.pushes import PushService
from gateway.salesforce.interfaces import SalesforceService, UnconfiguredSalesforce
from gateway.store import Store
from gateway.store.db import make_engine


@dataclass
class Gate:
    """The gate's parts, built once per process: by create_app for the web, by the worker for the sync."""

    config: GateConfig
    store: Store
    budget: CallBudget
    marketo: MarketoService
    cache: TTLCache
    checks: CheckService
    pushes: PushService
    salesforce: SalesforceService = field(default_factory=UnconfiguredSalesforce)


def configure_logging(log_format: str | None = None) -> None:
    """INFO to stderr for every process of the gate (web, worker, demo), as LOG_FORMAT says (JSON lines or
    key=value text, gateway/logs.py); a no-op where logging is set up."""
    import os

    from gateway.config import log_format as log_format_in
    from gateway.logs import LOG_FORMATTERS

    handler = logging.StreamHandler()
    handler.setFormatter(LOG_FORMATTERS[log_format or log_format_in(os.environ)]())
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def build_marketo(config: GateConfig, budget: CallBudget, circuit: SharedCircuit | None = None) -> MarketoService:
    """The Marketo client, or its null twin when Marketo is not configured (gateway.marketo.interfaces).

    `circuit`: the app-wide state of its circuit breaker (the store's), so that every process of the app
    opens, probes and closes it together; without it the breaker is this process's alone."""
    if not config.marketo_configured:
        return UnconfiguredMarketo()
    from gateway.logs import redact_secrets_in_logs
    from gateway.marketo.client import MarketoClient
    from gateway.metrics import record_marketo_call

    redact_secrets_in_logs()  # the identity call's URL holds the client secret; urllib3 logs URLs at DEBUG
    return MarketoClient(
        config.marketo_base_url,
        config.marketo_client_id,
        config.marketo_client_secret,
        request_timeout=config.marketo_request_timeout,
        max_concurrency=config.marketo_max_concurrency,
        on_call=budget,
        on_outcome=record_marketo_call,  # /metrics counts each call's outcome; a failure is a marketo.error event
        on_unanswered=budget.give_back,  # no answer or a 5xx: not charged
        breaker=CircuitBreaker(probe_seconds=config.marketo_probe_seconds, shared=circuit),
    )


def build_salesforce(config: GateConfig) -> SalesforceService:
    """The Salesforce client, or its null twin when Salesforce is not configured (gateway.salesforce.interfaces)."""
    if not config.salesforce_configured:
        return UnconfiguredSalesforce()
    from gateway.logs import redact_secrets_in_logs
    from gateway.metrics import record_salesforce_call
    from gateway.salesforce.client import SalesforceClient

    redact_secrets_in_logs()
    return SalesforceClient(config.salesforce_login_url, config.salesforce_client_id, config.salesforce_client_secret,
                            version=config.salesforce_api_version, on_call=record_salesforce_call)


def build_gate(config: GateConfig) -> Gate:
    store = Store(make_engine(config.database_url))
    budget = CallBudget(store, config.marketo_daily_budget)
    marketo = build_marketo(config, budget, store.circuit)
    cache = TTLCache(config.cache_ttl, config.cache_max_entries)
    checks = CheckService(store, marketo, cache, config)
    pushes = PushService(store, marketo)
    return Gate(config=config, store=store, budget=budget, marketo=marketo, cache=cache, checks=checks, pushes=pushes,
                salesforce=build_salesforce(config))


def create_app(config: GateConfig | None = None) -> Flask:
    app = Flask(__name__)
    config = config or load_config()
    app.config.update(SECRET_KEY=config.secret_key, MAX_CONTENT_LENGTH=config.max_content_length)
    app.json.sort_keys = False
    configure_logging(config.log_format)
    app.extensions["gate"] = build_gate(config)

    from gateway.api import admin, callouts, errors, health, marketo_hook, metrics, openapi

    errors.register_error_handlers(app)
    app.register_blueprint(callouts.bp)
    app.register_blueprint(marketo_hook.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    openapi.init_app(app)

    from gateway import console

    console.init_app(app, config)  # the admin console's pages, sign-in and CSRF

    from gateway.api import security

    security.init_app(app, config)  # CORS, rate limits, secure headers, proxy headers
    from gateway.api import deadline

    deadline.init_app(app)  # outermost: stamps each request's arrival before anything else runs
    return app
