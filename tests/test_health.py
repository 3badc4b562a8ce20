"""Liveness and readiness on a database that `gateway migrate` has not (or not fully) brought up to date."""
from __future__ import annotations

import os

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from gateway.store.db import make_engine, upgrade
from tests.conftest import CALLER, connect_or_skip


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Retry-After"] == "5"
    return response.get_json()["error"]

CHECK = {"source": "web", "workflow": "single_send", "sender": "rep@acme.example",
         "messages": [{"id": "m1", "recipients": [{"email": "bob@example.com", "type": "to"}]}]}


@pytest.fixture
def raw_database_url(tmp_path):
    """A database with no tables: a new SQLite file, or a PostgreSQL database `<test database>_raw` made afresh."""
    url = os.environ.get("GATEWAY_TEST_DATABASE_URL")
    if not url:
        yield f"sqlite:///{tmp_path / 'unmigrated.sqlite3'}"
        return
    admin = connect_or_skip(url).execution_options(isolation_level="AUTOCOMMIT")
    raw = make_url(admin.url).set(database=f"{make_url(admin.url).database}_raw")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{raw.database}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{raw.database}"'))
    yield raw.render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{raw.database}" WITH (FORCE)'))
    admin.dispose()


def test_healthz_answers_without_a_database(make_gate):
    """Liveness is the process's: a database that is down must not get the dyno restarted."""
    client = make_gate(database_url="postgresql+psycopg://postgres@127.0.0.1:1/nowhere").test_client()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_503_when_the_database_does_not_answer(make_gate):
    client = make_gate(database_url="postgresql+psycopg://postgres@127.0.0.1:1/nowhere").test_client()
    error = error_of(client.get("/readyz"), 503)
    assert error["code"] == "database_unavailable"


def test_readyz_is_ready_on_a_migrated_database(make_gate):
    response = make_gate().test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_an_unmigrated_database_says_run_gateway_migrate(make_gate, raw_database_url):
    client = make_gate(database_url=raw_database_url).test_client()
    assert client.get("/healthz").status_code == 200

    not_ready = {"code": "database_not_migrated",
                 "message": "The gate is not ready: the database has no tables yet; run gateway migrate."}
    assert error_of(client.get("/readyz"), 503) == not_ready
    assert error_of(client.post("/v1/checks", json=CHECK, headers=CALLER), 503) == not_ready

    upgrade(make_engine(raw_database_url))
    assert client.get("/readyz").status_code == 200
    assert client.post("/v1/checks", json=CHECK, headers=CALLER).status_code == 200


def test_a_database_behind_the_head_migration_is_not_ready(make_gate, raw_database_url):
    engine = make_engine(raw_database_url)
    upgrade(engine, "0002")
    engine.dispose()
    error = error_of(make_gate(database_url=raw_database_url).test_client().get("/readyz"), 503)
    assert error["code"] == "database_not_migrated"
    assert error["message"].startswith("The gate is not ready: the database schema is at revision 0002, not ")
    assert error["message"].endswith("run gateway migrate.")
