"""What a user reads when something is wrong: help, errors, and the one line that says what to set."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load_config
from tests.conftest import ADMIN, CALLER

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = Path(sys.executable).parent / "gateway"


def run(command: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items()
             if not key.startswith(("MARKETO_", "GATEWAY_", "SECRET_KEY", "DATABASE_URL", "REDIS_URL"))}
    return subprocess.run(command, env={**clean, **env}, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_help_keeps_the_list_of_commands_one_per_line(tmp_path):
    result = run([str(GATEWAY), "--help"], {}, tmp_path)
    assert result.returncode == 0
    lines = [line.strip() for line in result.stdout.splitlines()]
    for command in ("gateway migrate", "gateway keys create NAME --role R", "gateway keys list | revoke NAME",
                    "gateway worker", "gateway demo"):
        assert any(line.startswith(command) for line in lines), f"{command!r} lost its own line:\n{result.stdout}"


def test_a_bad_query_string_says_it_is_the_query_string(client):
    response = client.get("/v1/admin/blocked-sends?limit=abc", headers=ADMIN)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert "query string" in error["message"]
    assert "body" not in error["message"]
    assert set(error["fields"]) == {"limit"}


def test_a_body_over_the_limit_says_what_the_limit_is(make_gate, simulator):
    client = make_gate(simulator, enabled=True, max_content_length=2048).test_client()
    body = {"workflow": "single_send", "messages": [{"recipients": [{"email": f"p{i}@example.com"} for i in range(200)]}]}
    response = client.post("/v1/checks", json=body, headers=CALLER)
    assert response.status_code == 413
    assert "at most 2,048 bytes" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("empty", ["", "   "])
def test_an_empty_address_is_named_as_such(client, empty):
    body = {"workflow": "single_send", "sender": "rep@acme.example",
            "messages": [{"id": "m1", "recipients": [{"email": empty, "type": "to"}]}]}
    response = client.post("/v1/checks", json=body, headers=CALLER)
    assert response.status_code == 200, response.get_data(as_text=True)
    result = response.get_json()["results"][0]
    assert result["reason"] == "Not sent: an empty address is not a valid email address."
    assert result["recipients"][0]["reason"] == "An empty address is not a valid email address."


def test_gunicorn_without_secret_key_prints_one_line_and_no_traceback(tmp_path):
    env = {"PORT": "0", "DATABASE_URL": f"sqlite:///{tmp_path / 'gate.sqlite3'}"}
    result = run([sys.executable, "-m", "gunicorn", "--config", str(ROOT / "gunicorn.conf.py"), "app:app"], env, ROOT)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if "SECRET_KEY" in line] == [
        "Error: configuration: SECRET_KEY is required outside demo mode"]


def test_a_gateway_command_without_secret_key_prints_one_line(tmp_path):
    result = run([str(GATEWAY), "worker", "--once"], {"DATABASE_URL": f"sqlite:///{tmp_path / 'gate.sqlite3'}"}, tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: configuration: SECRET_KEY is required outside demo mode"


@pytest.mark.parametrize("once", [[], ["--once"]])
def test_the_worker_without_marketo_settings_fails(tmp_path, once):
    env = {"SECRET_KEY": "s", "DATABASE_URL": f"sqlite:///{tmp_path / 'gate.sqlite3'}"}
    result = run([str(GATEWAY), "worker", *once], env, tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        "Error: Marketo is not configured: set MARKETO_BASE_URL, MARKETO_CLIENT_ID and MARKETO_CLIENT_SECRET.")


def test_on_a_dyno_heroku_redis_tls_url_is_used_without_certificate_checks():
    base = {"SECRET_KEY": "s"}
    heroku = load_config({**base, "DYNO": "web.1", "REDIS_URL": "rediss://:p@ec2.example.com:6380"})
    assert heroku.redis_url == "rediss://:p@ec2.example.com:6380?ssl_cert_reqs=none"
    chosen = load_config({**base, "DYNO": "web.1", "REDIS_URL": "rediss://h:6380/0?ssl_cert_reqs=required"})
    assert chosen.redis_url == "rediss://h:6380/0?ssl_cert_reqs=required"
    assert load_config({**base, "REDIS_URL": "rediss://h:6380"}).redis_url == "rediss://h:6380"
    assert load_config({**base, "DYNO": "web.1", "REDIS_URL": "redis://h:6379"}).redis_url == "redis://h:6379"


def test_gunicorns_gevent_workers_start_without_a_monkey_patch_warning(tmp_path):
    """gunicorn's master leaves the gate to `gateway prepare` in a child, so nothing imported ssl or requests
    before each gevent worker patches them: no MonkeyPatchWarning, and TLS to Marketo on patched sockets."""
    import requests

    from tests.conftest import free_port, wait_for

    port = free_port()
    clean = {key: value for key, value in os.environ.items()
             if not key.startswith(("MARKETO_", "GATEWAY_", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "PROMETHEUS_"))}
    env = {**clean, "PORT": str(port), "SECRET_KEY": "s", "DATABASE_URL": f"sqlite:///{tmp_path / 'gate.sqlite3'}"}
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", str(ROOT / "gunicorn.conf.py"), "app:app"],
                               env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def answers() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return process.poll() is not None

    try:
        wait_for(answers, timeout=30, what="gunicorn to answer")
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert "Using worker: gevent" in output
    assert "Booting worker" in output
    assert "MonkeyPatchWarning" not in output
