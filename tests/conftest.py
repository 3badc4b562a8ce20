"""Fixtures: a real database (SQLite, or PostgreSQL from GATEWAY_TEST_DATABASE_URL), the Marketo simulator
served over real HTTP, and the gate built around them."""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace

import pytest
from sqlalchemy import Table, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from werkzeug.serving import make_server

from gateway import create_app
from gateway.config import ApiKeySpec, GateConfig, normalize_database_url
from gateway.store import Store
from gateway.store.db import make_engine, upgrade
from gateway.store.models import Base, MirrorUnsubscribe

CALLER_KEY = "test-caller-key"
ADMIN_KEY = "test-admin-key"
CALLER = {"Authorization": f"Bearer {CALLER_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
IN_CI = os.environ.get("CI", "").lower() == "true"


def connect_or_skip(url: str):
    """A missing server is a skip on a laptop and a failure in CI, where the server must be there."""
    engine = make_engine(normalize_database_url(url))
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as error:
        engine.dispose()
        reason = f"no database at {url}: {str(error).splitlines()[0]}"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return engine


def fresh_schema(engine) -> None:
    with engine.begin() as connection:
        Base.metadata.drop_all(connection)
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    upgrade(engine)


def rows_of_every_table(engine) -> dict[Table, list[dict]]:
    with engine.connect() as connection:
        return {table: [dict(row._mapping) for row in connection.execute(table.select())]
                for table in Base.metadata.sorted_tables}


def restore_rows(engine, rows: dict[Table, list[dict]]) -> None:
    """Every table of the models back to `rows`: children emptied before their parents, parents filled first."""
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
        for table in Base.metadata.sorted_tables:
            if rows.get(table):
                connection.execute(table.insert(), rows[table])


@dataclass(frozen=True)
class MigratedDatabase:
    engine: Engine
    seeded: dict[Table, list[dict]]  # the rows the migrations insert (the singletons), as they left them


@pytest.fixture(scope="session")
def migrated(tmp_path_factory):
    url = os.environ.get("GATEWAY_TEST_DATABASE_URL")
    if url:
        engine = connect_or_skip(url)
    else:
        engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('db') / 'gate.sqlite3'}")
    fresh_schema(engine)
    yield MigratedDatabase(engine, rows_of_every_table(engine))
    engine.dispose()


@pytest.fixture(scope="session")
def engine(migrated):
    return migrated.engine


@pytest.fixture
def store(migrated):
    """The store on the test database; afterwards every table holds just what the migrations seeded again."""
    yield Store(migrated.engine)
    restore_rows(migrated.engine, migrated.seeded)


@pytest.fixture
def simulator():
    from gateway.simulators.marketo import SimulatorState, start_simulator

    running = start_simulator(SimulatorState())
    yield running
    running.stop()


def gate_config(engine, **overrides) -> GateConfig:
    config = GateConfig(
        database_url=engine.url.render_as_string(hide_password=False),
        secret_key="test-secret",
        api_keys=(ApiKeySpec("test-caller", "caller", CALLER_KEY), ApiKeySpec("test-admin", "admin", ADMIN_KEY)),
        check_timeout=3.0,
        settings_cache_seconds=0,  # tests flip settings straight in the database
    )
    return replace(config, **overrides)


def marketo_settings(simulator) -> dict:
    """The config overrides that point the gate at a running simulator."""
    return {
        "marketo_base_url": simulator.base_url,
        "marketo_client_id": simulator.state.client_id,
        "marketo_client_secret": simulator.state.client_secret,
    }


@pytest.fixture
def make_gate(engine, store):
    """Build a gate app; pass a simulator to point it at Marketo, `enabled=True` to turn the check on."""
    apps = []

    def make(simulator=None, *, enabled=False, **overrides):
        if simulator is not None:
            overrides = {**marketo_settings(simulator), **overrides}
        app = create_app(gate_config(store.engine, **overrides))
        app.testing = True
        if enabled:
            store.settings.update({"marketo_check_enabled": True}, updated_by="test")
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["gate"].store.engine.dispose()


@pytest.fixture
def gate(make_gate, simulator):
    """The gate with the check on, talking to a fresh simulator over HTTP."""
    return make_gate(simulator, enabled=True)


@pytest.fixture
def client(gate):
    return gate.test_client()


# A real browser and real HTTP -------------------------------------------------------------------------

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def find_chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if path is None:
        reason = "Debian's chromium is not installed (apt-get install chromium); the browser test needs it"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def browser():
    chromium = find_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        if IN_CI:
            pytest.fail(f"playwright is not installed: {error}")
        pytest.skip(f"playwright is not installed (pip install -e '.[test]'): {error}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextmanager
def serving(wsgi_app):
    """Serve a WSGI app over real HTTP on a free localhost port, in a thread."""
    server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


def mirror_emails(store) -> set[str]:
    """Every address in the mirror, read straight from its table."""
    with store.engine.connect() as connection:
        return set(connection.scalars(select(MirrorUnsubscribe.email)))


class FakeClock:
    """A monotonic clock that moves only when a test sets `now`."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now, for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float = 30.0, what: str = "condition", poll: float = 0.05):
    """Poll `condition` until it is truthy (returned) or `timeout` seconds pass: waiting on a condition, not a sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)  # polling a condition, bounded by the deadline
