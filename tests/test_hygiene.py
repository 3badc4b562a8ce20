"""What every answer carries, what never reaches a log, and the configuration that must be there."""
from __future__ import annotations

import json
import logging

import pytest

from gateway.api.security import API_CSP, PAGE_FALLBACK_CSP
from gateway.logs import RedactSecrets
from gateway.config import ConfigError, load_config
from tests.conftest import ADMIN, CALLER, CALLER_KEY

SECURE = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def assert_secure(response, csp=API_CSP):
    for name, value in SECURE.items():
        assert response.headers.get(name) == value, (name, dict(response.headers))
    assert response.headers.get("Content-Security-Policy") == csp


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.post("/v1/hooks/email-client", json={"client": "outlook", "to": ["bob@example.com"]}, headers=CALLER),
        lambda c: c.post("/v1/checks", json={}, headers=CALLER),  # 422
        lambda c: c.post("/v1/checks", json={}),  # 401
        lambda c: c.get("/v1/admin/settings", headers=ADMIN),
        lambda c: c.get("/v1/admin/settings", headers=CALLER),  # 403
        lambda c: c.get("/v1/admin/blocked-sends?format=csv", headers=ADMIN),
        lambda c: c.get("/nothing-here"),  # 404
        lambda c: c.get("/v1/checks", headers=CALLER),  # 405
        lambda c: c.options("/v1/checks"),
        lambda c: c.get("/healthz"),
    ],
)
def test_every_answer_carries_the_secure_headers(client, call):
    response = call(client)
    assert_secure(response)
    assert "Strict-Transport-Security" not in response.headers  # plain HTTP: HSTS means nothing there


def test_an_html_page_keeps_its_own_policy(make_gate):
    """The docs page sets its own CSP (it loads its own scripts and styles): it is not replaced."""
    app = make_gate()
    page_csp = "default-src 'self'; script-src 'self'"
    app.add_url_rule("/test-page", "test_page", lambda: ("<h1>docs</h1>", 200, {"Content-Security-Policy": page_csp}))
    app.add_url_rule("/test-bare-page", "test_bare_page", lambda: "<h1>bare</h1>")
    client = app.test_client()
    assert_secure(client.get("/test-page"), csp=page_csp)
    bare = client.get("/test-bare-page")
    assert bare.mimetype == "text/html"  # a page that sets no policy gets one that cannot break its scripts
    assert bare.headers["Content-Security-Policy"] == PAGE_FALLBACK_CSP
    assert bare.headers["X-Frame-Options"] == "DENY"


def test_hsts_over_https_only(make_gate):
    client = make_gate().test_client()
    assert "Strict-Transport-Security" not in client.get("/healthz").headers
    assert client.get("/healthz", base_url="https://localhost").headers["Strict-Transport-Security"] == "max-age=31536000"
    # X-Forwarded-Proto is believed only from a trusted proxy
    assert "Strict-Transport-Security" not in client.get("/healthz", headers={"X-Forwarded-Proto": "https"}).headers


def test_behind_a_trusted_proxy_forwarded_https_gets_hsts(make_gate):
    client = make_gate(trust_proxy_hops=1).test_client()
    response = client.get("/healthz", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "Strict-Transport-Security" not in client.get("/healthz", headers={"X-Forwarded-Proto": "http"}).headers


@pytest.mark.parametrize(
    "env, hops",
    [
        ({}, 0),
        ({"DYNO": "web.1"}, 1),  # on Heroku, behind its router, by default
        ({"DYNO": "web.1", "GATEWAY_TRUST_PROXY": "false"}, 0),
        ({"GATEWAY_TRUST_PROXY": "true"}, 1),
        ({"GATEWAY_TRUST_PROXY": "2"}, 2),
        ({"GATEWAY_TRUST_PROXY": "0"}, 0),
    ],
)
def test_trust_proxy_setting(env, hops):
    assert load_config({"SECRET_KEY": "x", **env}).trust_proxy_hops == hops


def test_trust_proxy_setting_must_be_a_flag_or_a_count():
    with pytest.raises(ConfigError, match="GATEWAY_TRUST_PROXY"):
        load_config({"SECRET_KEY": "x", "GATEWAY_TRUST_PROXY": "maybe"})


def test_secret_key_is_required_outside_demo_mode():
    with pytest.raises(ConfigError, match="SECRET_KEY is required outside demo mode"):
        load_config({})
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config({"SECRET_KEY": ""})
    assert load_config({"SECRET_KEY": "s3cret"}).secret_key == "s3cret"
    demo = load_config({"GATEWAY_DEMO": "1"})
    assert len(demo.secret_key) == 64 and demo.secret_key != load_config({"GATEWAY_DEMO": "1"}).secret_key


def test_admin_endpoints_refuse_caller_keys(client, store):
    for method, path, body in [
        ("get", "/v1/admin/settings", None),
        ("patch", "/v1/admin/settings", {"marketo_check_enabled": False}),
        ("get", "/v1/admin/blocked-sends", None),
        ("get", "/v1/admin/blocked-sends?format=csv", None),
    ]:
        response = getattr(client, method)(path, json=body, headers=CALLER)
        assert response.status_code == 403, (path, response.get_data(as_text=True))
        assert response.get_json()["error"] == {"code": "forbidden", "message": "Administrator permission required."}
    assert store.settings.get().marketo_check_enabled is True  # the PATCH changed nothing


# Loggers that set their own level and so would not pass DEBUG records on just because the root logger does.
CHATTY_LOGGERS = ("gateway", "flask_cors", "limits", "werkzeug", "urllib3", "requests")


@pytest.mark.parametrize("stored_key", [False, True], ids=["env-key", "stored-key"])
def test_no_key_subject_body_or_secret_in_any_log_record(make_gate, simulator, store, caplog, stored_key):
    simulator.state.add_lead("jane@example.com", unsubscribed=True)
    app = make_gate(simulator, enabled=True, cors_origins=("https://addin.example.com",))
    key = store.keys.create("log-test", "caller").key if stored_key else CALLER_KEY
    subject = "Quarterly pricing for ZEBRA-7731 (confidential)"
    body = json.dumps({"client": "outlook", "sender": "rep@acme.example", "subject": subject,
                       "to": [{"emailAddress": "jane@example.com", "displayName": "Jane"}], "cc": ["bob@example.com"]})
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", "Origin": "https://addin.example.com"}

    caplog.set_level(logging.DEBUG)
    for name in CHATTY_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    client = app.test_client()
    response = client.post("/v1/hooks/email-client", data=body, headers=headers)
    assert response.status_code == 200 and response.get_json()["decision"] == "deny"
    # and the ways a request can fail: bad JSON, wrong shape, unknown key
    client.post("/v1/hooks/email-client", data=body[:-1], headers=headers)
    client.post("/v1/hooks/email-client", data=json.dumps({"subject": subject}), headers=headers)
    client.post("/v1/hooks/email-client", data=body, headers={**headers, "Authorization": f"Bearer {key}x"})

    assert caplog.records, "nothing was logged at all: the capture is not working"
    secrets = {"subject": subject, "key": key, "body": body, "marketo secret": simulator.state.client_secret}
    for record in caplog.records:
        text = f"{record.name} {record.getMessage()} {record.exc_text or ''}"
        for what, secret in secrets.items():
            assert secret not in text, f"the {what} is in a log record of {record.name}: {text}"
    for what, secret in secrets.items():
        assert secret not in caplog.text, f"the {what} is in the log"


def test_secrets_in_logged_urls_are_redacted():
    record = logging.LogRecord("urllib3.connectionpool", logging.DEBUG, __file__, 1, '%s "%s %s" %s', (
        "https://123-ABC-456.mktorest.com", "GET",
        "/identity/oauth/token?grant_type=client_credentials&client_id=abc&client_secret=S3cr3t&x=1", 200), None)
    RedactSecrets().filter(record)
    assert record.getMessage() == ('https://123-ABC-456.mktorest.com "GET /identity/oauth/token?grant_type='
                                   'client_credentials&client_id=abc&client_secret=[redacted]&x=1" 200')
    record = logging.LogRecord("urllib3.connectionpool", logging.DEBUG, __file__, 1, "GET /x?access_token=tok", None, None)
    RedactSecrets().filter(record)
    assert record.getMessage() == "GET /x?access_token=[redacted]"
