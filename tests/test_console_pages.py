"""The console without a browser: who gets in, the headers and cookies of its pages, CSRF and the Referer over
HTTPS behind Heroku's router, idle sessions, the CLI that makes accounts, and the pieces the pages draw."""
from __future__ import annotations

import re
import time
from datetime import date
from types import SimpleNamespace

import itsdangerous.timed
import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.console import CONSOLE_CSP, IDLE_TIMEOUT
from gateway.console.accounts import hash_password
from gateway.console.chart import nice_top, per_day_chart
from gateway.console.pages import split_addresses
from gateway.decisions import CheckRequest, Message
from gateway.domain import RecipientType, Source, Workflow
from schemas.common import recipient
from tests.conftest import ADMIN, CALLER

PASSWORD = "a long enough password"
HTTPS_ROUTER = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
SITE = "https://localhost"  # the test client's host, as the browser saw it


def csrf_token(page_text: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page_text).group(1)


@pytest.fixture
def admin(store):
    return store.admins.create("ana", hash_password(PASSWORD))


@pytest.fixture
def behind_router(make_gate, admin):
    """A test client that reaches the gate as Heroku's router does: HTTPS ended at the router, forwarded."""
    return router_client(make_gate(trust_proxy_hops=1))


def router_client(app):
    return app.test_client()  # plain HTTP to the app, as the router forwards it; HTTPS said in HTTPS_ROUTER


def sign_in(client, *, referer: str | None = SITE + "/console/sign-in", password=PASSWORD, headers=HTTPS_ROUTER):
    token = csrf_token(client.get("/console/sign-in", headers=headers).get_data(as_text=True))
    sent = {**headers, **({"Referer": referer} if referer else {})}
    return client.post("/console/sign-in", data={"name": "ana", "password": password, "csrf_token": token},
                       headers=sent)


def test_sign_in_over_https_behind_the_router_sets_a_secure_session_cookie(behind_router):
    response = sign_in(behind_router)
    assert response.status_code == 303 and response.headers["Location"] == "/console/integrations"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("gate_console=") and "; Secure" in cookie and "; HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    page = behind_router.get("/console/integrations", headers=HTTPS_ROUTER)
    assert page.status_code == 200 and "ana" in page.get_data(as_text=True)


@pytest.mark.parametrize("referer, why", [(None, "The referrer header is missing."),
                                          ("https://evil.example.com/console/sign-in", "The referrer does not match"),
                                          ("http://localhost/console/sign-in", "The referrer does not match")])
def test_over_https_a_form_without_a_same_origin_referer_is_refused(behind_router, referer, why):
    response = sign_in(behind_router, referer=referer)
    assert response.status_code == 400 and why in response.get_data(as_text=True)
    assert behind_router.get("/console/integrations", headers=HTTPS_ROUTER).status_code == 302  # not signed in


def test_console_pages_send_a_same_origin_referrer_and_a_strict_policy_the_api_keeps_its_own(behind_router):
    page = behind_router.get("/console/sign-in", headers=HTTPS_ROUTER)
    # Without `same-origin` the browser would send no Referer, and every form over HTTPS would be refused.
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert page.headers["Content-Security-Policy"] == CONSOLE_CSP
    assert "unsafe-inline" not in CONSOLE_CSP and "unsafe-eval" not in CONSOLE_CSP and "script-src 'none'" in CONSOLE_CSP
    assert page.headers["Strict-Transport-Security"] and page.headers["X-Frame-Options"] == "DENY"
    api = behind_router.get("/v1/admin/status", headers={**HTTPS_ROUTER, **ADMIN})
    assert api.headers["Referrer-Policy"] == "no-referrer" and "Set-Cookie" not in api.headers
    assert "Vary" not in api.headers  # only the console has sessions: the API's answers do not vary by cookie
    css = behind_router.get("/console/static/console.css", headers=HTTPS_ROUTER)
    assert css.status_code == 200 and css.mimetype == "text/css"


@pytest.mark.parametrize("key", [ADMIN, CALLER], ids=["admin-key", "caller-key"])
def test_api_keys_of_any_role_cannot_open_the_console(behind_router, key):
    for path in ("/console/integrations", "/console/blocked-sends", "/console/blocked-sends.csv", "/console/audit"):
        response = behind_router.get(path, headers={**HTTPS_ROUTER, **key})
        assert response.status_code == 302 and response.headers["Location"].startswith("/console/sign-in?next=")
    posted = behind_router.post("/console/integrations/check", data={"enabled": "on"}, headers={**HTTPS_ROUTER, **key})
    assert posted.status_code == 400  # no CSRF token: refused before anything else


def test_a_session_ends_after_a_day_without_a_request(behind_router, monkeypatch):
    assert sign_in(behind_router).status_code == 303
    assert behind_router.get("/console/mirror", headers=HTTPS_ROUTER).status_code == 200
    later = time.time() + IDLE_TIMEOUT.total_seconds() - 60
    # the clock the session cookie's signature is stamped and checked with, and only that clock
    monkeypatch.setattr(itsdangerous.timed, "time", SimpleNamespace(time=lambda: later))
    # The last request refreshed the cookie: a day less a minute later it still opens the console...
    assert behind_router.get("/console/mirror", headers=HTTPS_ROUTER).status_code == 200
    much_later = later + IDLE_TIMEOUT.total_seconds() + 60
    monkeypatch.setattr(itsdangerous.timed, "time", SimpleNamespace(time=lambda: much_later))
    # ...but a day and a minute after that one, it no longer does.
    assert behind_router.get("/console/mirror", headers=HTTPS_ROUTER).status_code == 302


def test_after_sign_in_only_a_console_path_is_followed(behind_router):
    for target, expected in [("/console/audit", "/console/audit"), ("https://evil.example.com/console/x", None),
                             ("//evil.example.com/console/", None), ("/v1/admin/status", None)]:
        page = behind_router.get(f"/console/sign-in?next={target}", headers=HTTPS_ROUTER).get_data(as_text=True)
        token = csrf_token(page)
        response = behind_router.post(
            "/console/sign-in", headers={**HTTPS_ROUTER, "Referer": SITE + "/console/sign-in"},
            data={"name": "ana", "password": PASSWORD, "csrf_token": token, "next": target})
        assert response.headers["Location"] == (expected or "/console/integrations"), target
        with behind_router.session_transaction("/console/") as session:
            session.clear()


def test_the_cli_makes_an_account_that_signs_in(make_gate, store, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", store.engine.url.render_as_string(hide_password=False))
    runner = CliRunner()
    made = runner.invoke(main, ["admins", "create", "ana", "--password-stdin"], input=PASSWORD + "\n")
    assert made.exit_code == 0, made.output
    stored = store.admins.by_name("ana")
    assert stored.password_hash.startswith("scrypt:") and PASSWORD not in stored.password_hash
    again = runner.invoke(main, ["admins", "create", "ana", "--password-stdin"], input=PASSWORD + "\n")
    assert again.exit_code != 0 and "exists already" in again.output
    short = runner.invoke(main, ["admins", "create", "bo", "--password-stdin"], input="short\n")
    assert short.exit_code != 0 and "at least 12 characters" in short.output and store.admins.by_name("bo") is None
    prompted = runner.invoke(main, ["admins", "create", "cy"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert prompted.exit_code == 0 and PASSWORD not in prompted.output
    client = router_client(make_gate(trust_proxy_hops=1))
    assert sign_in(client).status_code == 303
    listed = runner.invoke(main, ["admins", "list"])
    assert "ana\tactive" in listed.output and "cy\tactive\tlast sign-in never" in listed.output


def test_a_dry_run_answers_like_a_check_and_logs_nothing(gate, simulator, store):
    simulator.state.add_lead("jane@example.com", unsubscribed=True)
    request = CheckRequest(Source.WEB, Workflow.SINGLE_SEND, None,
                           (Message(None, (recipient("jane@example.com", RecipientType.TO),)),))
    checks = gate.extensions["gate"].checks
    dry = checks.run(request, dry_run=True)
    assert dry.results[0].decision == "deny" and store.blocked_sends.page(limit=5) == []
    assert checks.run(request).results[0].decision == "deny" and len(store.blocked_sends.page(limit=5)) == 1


def test_addresses_split_on_lines_commas_and_semicolons_once_each():
    assert split_addresses(" a@x.example,\nb@x.example ; a@x.example\n\n, ") == ["a@x.example", "b@x.example"]


def test_the_chart_stacks_reasons_per_day_on_a_round_axis():
    assert [nice_top(n) for n in (0, 1, 3, 7, 10, 11, 240)] == [1, 1, 5, 10, 10, 20, 500]
    chart = per_day_chart({date(2026, 3, 2): {"unsubscribed": 3, "unverified": 1}}, date(2026, 3, 1), date(2026, 3, 3))
    assert chart.total == 4 and [label for label, _ in chart.legend] == ["unsubscribed", "unverified"]
    unsubscribed, unverified = chart.bars
    assert unsubscribed.height == pytest.approx(3 * unverified.height, abs=0.2)
    assert unverified.y + unverified.height == pytest.approx(unsubscribed.y, abs=0.2)  # stacked on top
    assert "4 blocked sends from 01 Mar to 03 Mar: 3 unsubscribed, 1 unverified" == chart.summary
    assert per_day_chart({}, date(2026, 3, 1), date(2026, 3, 1)).bars == ()


def signed_in(make_gate, **overrides):
    client = router_client(make_gate(trust_proxy_hops=1, **overrides))
    assert sign_in(client).status_code == 303
    return client


def test_salesforce_shows_what_the_status_says_once_it_has_a_section(make_gate, admin, monkeypatch):
    client = signed_in(make_gate)
    page = client.get("/console/integrations", headers=HTTPS_ROUTER).get_data(as_text=True)
    assert 'id="salesforce-state">Not configured.' in page
    from gateway.api import admin as admin_api

    real = admin_api.gate_status
    monkeypatch.setattr("gateway.console.pages.gate_status", lambda: {
        **real(), "salesforce": {"configured": True, "connected": False, "outbox": {"pending": 3, "failed": 1}}})
    page = client.get("/console/integrations", headers=HTTPS_ROUTER).get_data(as_text=True)
    assert "salesforce-state" not in page
    assert re.search(r"<dt>Connected</dt>\s*<dd>no</dd>", page) and re.search(r"<dt>Pending</dt>\s*<dd>3</dd>", page)


def test_the_banner_is_on_every_page_while_the_check_is_off_and_gone_when_on(make_gate, admin, store):
    client = signed_in(make_gate)
    for path in ("integrations", "mirror", "blocked-sends", "check", "audit"):
        assert 'id="check-off-banner"' in client.get(f"/console/{path}", headers=HTTPS_ROUTER).get_data(as_text=True)
    store.settings.update({"marketo_check_enabled": True}, updated_by="test")
    for path in ("integrations", "mirror", "blocked-sends", "check", "audit"):
        assert 'id="check-off-banner"' not in client.get(f"/console/{path}", headers=HTTPS_ROUTER).get_data(as_text=True)


def test_a_wrong_filter_is_said_and_exports_nothing(make_gate, admin):
    client = signed_in(make_gate)
    page = client.get("/console/blocked-sends?since=not-a-day&source=fax", headers=HTTPS_ROUTER)
    assert page.status_code == 422 and "Not a valid date value." in page.get_data(as_text=True)
    assert client.get("/console/blocked-sends.csv?source=fax", headers=HTTPS_ROUTER).status_code == 422
