"""Caller keys made by the CLI: shown once, stored as a hash, revocable, last use recorded, limited to sources."""
import hashlib

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from gateway.cli import main
from tests.conftest import ADMIN, CALLER

WEB_CHECK = {"source": "web", "workflow": "single_send", "sender": "rep@acme.example",
             "messages": [{"id": "msg-1", "recipients": [{"email": "jane@example.com"}]}]}
SALESFORCE = {"workflow": "single_send", "userId": "005xx0000012345",
              "records": [{"attributes": {"type": "EmailMessage"}, "Id": "02s000000000001",
                           "ToAddress": "jane@example.com", "FromAddress": "rep@acme.example"}]}


def email_client(client):
    return {"client": client, "sender": "rep@acme.example", "to": ["jane@example.com"]}


def checks_as(source):
    return {**WEB_CHECK, "source": source}


# What each kind of caller sends, and where: (label, path, body).
CALLS = {
    "salesforce hook": ("/v1/hooks/salesforce", SALESFORCE),
    "outlook add-in": ("/v1/hooks/email-client", email_client("outlook")),
    "gmail add-in": ("/v1/hooks/email-client", email_client("gmail")),
    "web check": ("/v1/checks", WEB_CHECK),
    "checks as salesforce": ("/v1/checks", checks_as("salesforce")),
    "checks as outlook": ("/v1/checks", checks_as("outlook")),
}
ALLOWED = {
    ("salesforce",): {"salesforce hook"},
    ("outlook",): {"outlook add-in"},
    ("gmail",): {"gmail add-in"},
    ("outlook", "gmail"): {"outlook add-in", "gmail add-in"},
    ("web",): {"web check"},
    ("salesforce", "web"): {"salesforce hook", "web check"},
}


@pytest.fixture
def leads(simulator):
    simulator.state.add_lead("jane@example.com", unsubscribed=True)
    return simulator.state


@pytest.fixture
def cli(store):
    """Runs `gateway …` against the test database, as an operator would with DATABASE_URL set."""
    runner = CliRunner()
    env = {"DATABASE_URL": store.engine.url.render_as_string(hide_password=False)}

    def run(*args, exit_code=0):
        result = runner.invoke(main, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == exit_code, result.output
        return result.output

    return run


@pytest.fixture
def create(cli):
    def make(name, *options):
        output = cli("keys", "create", name, *options)
        return output.splitlines()[1]  # the line after "… created. It is shown only now:"

    return make


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def key_row(store, name):
    with store.engine.connect() as connection:
        return connection.execute(text("SELECT * FROM api_keys WHERE name = :name"), {"name": name}).mappings().one()


def blocked_count(store):
    with store.engine.connect() as connection:
        return connection.execute(text("SELECT COUNT(*) FROM blocked_sends")).scalar_one()


def test_create_prints_the_key_once_and_the_database_holds_only_its_sha256(cli, store):
    output = cli("keys", "create", "sf-prod", "--role", "caller", "--source", "salesforce")
    key = output.splitlines()[1]
    assert key.startswith("gk_") and len(key) > 40
    assert output.count(key) == 1
    assert "limited to salesforce" in output
    row = key_row(store, "sf-prod")
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert all(key not in str(value) for value in row.values())
    assert row["sources"] == "salesforce" and not row["require_signature"] and row["signing_secret"] is None
    listing = cli("keys", "list")
    assert key not in listing
    assert "sf-prod\tcaller\tactive\tsources salesforce\tunsigned\tlast used never" in listing


def test_a_created_key_authenticates_and_records_its_last_use(create, client, leads, store, cli):
    key = create("web-app")
    assert store.keys.all()[0].last_used_at is None
    response = client.post("/v1/checks", json=WEB_CHECK, headers=bearer(key))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["results"][0]["decision"] == "deny"
    (stored,) = store.keys.all()
    assert stored.last_used_at is not None
    assert "any source\tunsigned\tlast used 2" in cli("keys", "list")


def test_a_revoked_key_is_401(create, cli, client, leads):
    key = create("old-script")
    assert client.post("/v1/checks", json=WEB_CHECK, headers=bearer(key)).status_code == 200
    assert "key 'old-script' revoked" in cli("keys", "revoke", "old-script")
    response = client.post("/v1/checks", json=WEB_CHECK, headers=bearer(key))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert "revoked" in cli("keys", "list")
    cli("keys", "revoke", "old-script", exit_code=1)  # nothing active left to revoke


def test_a_name_is_taken_once_and_admin_keys_take_no_sources(cli):
    cli("keys", "create", "ops", "--role", "admin")
    assert "exists already" in cli("keys", "create", "ops", exit_code=1)
    assert "for caller keys" in cli("keys", "create", "ops-2", "--role", "admin", "--source", "web", exit_code=2)
    assert "for caller keys" in cli("keys", "create", "ops-3", "--role", "admin", "--require-signature", exit_code=2)
    cli("keys", "create", "fax", "--source", "fax", exit_code=2)


@pytest.mark.parametrize("sources", list(ALLOWED), ids=["+".join(s) for s in ALLOWED])
def test_a_key_limited_to_sources_calls_only_their_endpoints(create, client, leads, store, sources):
    key = create("limited", *[option for source in sources for option in ("--source", source)])
    for label, (path, body) in CALLS.items():
        before = blocked_count(store)
        response = client.post(path, json=body, headers=bearer(key))
        if label in ALLOWED[sources]:
            assert response.status_code == 200, (label, response.get_json())
            assert blocked_count(store) == before + 1
        else:
            assert response.status_code == 403, (label, response.get_json())
            error = response.get_json()["error"]
            assert error["code"] == "forbidden" and ", ".join(sources) in error["message"]
            assert blocked_count(store) == before, label  # nothing written


def test_a_limited_key_that_is_refused_is_not_marked_used(create, client, leads, store):
    key = create("sf-only", "--source", "salesforce")
    assert client.post("/v1/checks", json=WEB_CHECK, headers=bearer(key)).status_code == 403
    assert store.keys.all()[0].last_used_at is None


def test_environment_keys_keep_working_without_sources(client, leads):
    for label, (path, body) in CALLS.items():
        assert client.post(path, json=body, headers=CALLER).status_code == 200, label


def test_admin_endpoints_need_an_admin_key(create, cli, client, leads):
    caller = create("web-app")
    limited = create("sf-prod", "--source", "salesforce")
    admin = create("ops", "--role", "admin")
    for key in (caller, limited):
        response = client.get("/v1/admin/settings", headers=bearer(key))
        assert response.status_code == 403
        assert response.get_json()["error"]["message"] == "Administrator permission required."
        response = client.patch("/v1/admin/settings", json={"marketo_check_enabled": False}, headers=bearer(key))
        assert response.status_code == 403
        assert client.get("/v1/admin/blocked-sends", headers=bearer(key)).status_code == 403
    assert client.get("/v1/admin/settings", headers=bearer(admin)).status_code == 200
    assert client.get("/v1/admin/blocked-sends", headers=bearer(admin)).status_code == 200
    # An admin key may also make checks, like the environment's admin key.
    assert client.post("/v1/checks", json=WEB_CHECK, headers=bearer(admin)).status_code == 200
    assert client.get("/v1/admin/settings", headers=ADMIN).status_code == 200
