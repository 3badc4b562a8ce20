"""The Marketo unsubscribe gate: a pre-send check between sales reps and people who unsubscribed."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask

from gateway.budget import CallBudget
from gateway.cache import TTLCache
from gateway.checks import CheckService
from gateway.config import GateConfig, load_config
from gateway.marketo.interfaces import MarketoService, UnconfiguredMarketo
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


def configure_logging() -> None:
    """INFO to stderr for every process of the gate (web, worker, demo); a no-op where logging is set up."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def build_marketo(config: GateConfig, budget: CallBudget) -> MarketoService:
    """The Marketo client, or its null twin when Marketo is not configured (gateway.marketo.interfaces)."""
    if not config.marketo_configured:
        return UnconfiguredMarketo()
    from gateway.logs import redact_secrets_in_logs
    from gateway.marketo.client import MarketoClient

    redact_secrets_in_logs()  # the identity call's URL holds the client secret; urllib3 logs URLs at DEBUG
    return MarketoClient(
        config.marketo_base_url,
        config.marketo_client_id,
        config.marketo_client_secret,
        request_timeout=config.marketo_request_timeout,
        max_concurrency=config.marketo_max_concurrency,
        on_call=budget,
    )


def build_gate(config: GateConfig) -> Gate:
    store = Store(make_engine(config.database_url))
    budget = CallBudget(store, config.marketo_daily_budget)
    marketo = build_marketo(config, budget)
    cache = TTLCache(config.cache_ttl, config.cache_max_entries)
    checks = CheckService(store, marketo, cache, config)
    return Gate(config=config, store=store, budget=budget, marketo=marketo, cache=cache, checks=checks)


def create_app(config: GateConfig | None = None) -> Flask:
    app = Flask(__name__)
    config = config or load_config()
    app.config.update(SECRET_KEY=config.secret_key, MAX_CONTENT_LENGTH=config.max_content_length)
    app.json.sort_keys = False
    from gateway.api.sessions import CookieSessions

    app.session_interface = CookieSessions()
    configure_logging()
    app.extensions["gate"] = build_gate(config)

    from gateway.api import admin, callouts, errors, health, openapi

    errors.register_error_handlers(app)
    app.register_blueprint(callouts.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(health.bp)
    openapi.init_app(app)

    from gateway.api import security

    security.init_app(app, config)  # CORS, rate limits, secure headers, proxy headers
    return app
