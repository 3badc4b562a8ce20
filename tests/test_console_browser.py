"""The console in a real browser: Debian's chromium driven by Playwright, over HTTPS through a stand-in for
Heroku's router (TLS ends there; the gate gets plain HTTP with X-Forwarded-Proto), talking to the Marketo
simulator over HTTP. Each page is saved as a screenshot at laptop and phone width under test-output/console/."""
from __future__ import annotations

import csv
import io
import threading
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from werkzeug.serving import generate_adhoc_ssl_context, make_server

from gateway.console.accounts import hash_password
from gateway.mirror_load import window_plan
from gateway.store import MAX_FAILED_SIGN_INS, utcnow
from tests.conftest import CALLER

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output" / "console"
WIDTHS = {"laptop": 1280, "phone": 390}
PASSWORD = "a long enough password"
CHECK_BODY = {"source": "web", "workflow": "single_send", "sender": "rep@acme.example",
              "messages": [{"id": "msg-1", "recipients": [{"email": "jane@example.com", "type": "to"}]}]}


def router(app):
    """Heroku's router as the dyno sees it: the request arrives over plain HTTP, saying it was HTTPS."""
    def forward(environ, start_response):
        environ = {**environ, "wsgi.url_scheme": "http", "HTTP_X_FORWARDED_PROTO": "https",
                   "HTTP_X_FORWARDED_FOR": environ.get("REMOTE_ADDR", "127.0.0.1")}
        return app(environ, start_response)
    return forward


@pytest.fixture(scope="module")
def tls():
    return generate_adhoc_ssl_context()


@contextmanager
def serving_https(wsgi_app, ssl_context):
    server = make_server("127.0.0.1", 0, wsgi_app, threaded=True, ssl_context=ssl_context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def console(make_gate, simulator, store, tls, browser):
    """Yields a function that serves a gate (overrides as make_gate's) and returns (base URL, signed-in page)."""
    store.admins.create("ana", hash_password(PASSWORD))
    stack = []

    def open_console(*, sign_in=True, **overrides):
        app = make_gate(simulator, trust_proxy_hops=1, **overrides)
        served = serving_https(router(app), tls)
        base = served.__enter__()
        stack.append(served)
        context = browser.new_context(ignore_https_errors=True, viewport={"width": WIDTHS["laptop"], "height": 900})
        stack.append(context)
        page = context.new_page()
        page.csp_errors = []
        page.on("console", lambda message: "Content Security Policy" in message.text and
                page.csp_errors.append(message.text))
        if sign_in:
            sign_in_as(page, base)
        return base, page

    yield open_console
    for item in reversed(stack):
        item.close() if hasattr(item, "close") else item.__exit__(None, None, None)


def sign_in_as(page, base, password=PASSWORD):
    page.goto(f"{base}/console/sign-in")
    page.get_by_label("Name").fill("ana")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def shoot(page, name: str) -> None:
    """Laptop and phone width; at neither may the page scroll sideways."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for label, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 900})
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {width}px"
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size({"width": WIDTHS["laptop"], "height": 900})


def test_sign_in_over_https_and_every_page_at_laptop_and_phone_width(console, simulator, store):
    simulator.state.add_lead("jane@example.com", unsubscribed=True)
    base, page = console()
    assert page.url == f"{base}/console/integrations"
    cookie = next(c for c in page.context.cookies() if c["name"] == "gate_console")
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert page.locator("#check-off-banner").is_visible()
    for path, name in [("integrations", "integrations"), ("mirror", "mirror"), ("blocked-sends", "blocked-sends"),
                       ("check", "check"), ("audit", "audit")]:
        page.goto(f"{base}/console/{path}")
        assert page.locator("h1").is_visible()
        shoot(page, name)
    # every field has a label the browser ties to it
    page.goto(f"{base}/console/blocked-sends")
    for label in ("Recipient", "Sender", "Source", "Workflow", "From", "To"):
        assert page.get_by_label(label, exact=True).count() == 1, label
    page.keyboard.press("Tab")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"  # visible focus
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{base}/console/sign-in")
    shoot(page, "sign-in")
    page.goto(f"{base}/console/audit")
    assert page.url.startswith(f"{base}/console/sign-in?next=")
    assert page.csp_errors == []


def test_a_wrong_password_then_the_lockout_said_on_the_page(console):
    base, page = console(sign_in=False)
    sign_in_as(page, base, password="not the password")
    assert page.locator("#sign-in-error").inner_text() == "Wrong name or password."
    for _ in range(MAX_FAILED_SIGN_INS - 1):
        sign_in_as(page, base, password="not the password")
    message = page.locator("#sign-in-error").inner_text()
    assert "locked for 15 minutes after 5 failed sign-ins" in message
    sign_in_as(page, base)  # the right password changes nothing while it is locked
    assert "locked for 15 minutes" in page.locator("#sign-in-error").inner_text()
    assert page.url.startswith(f"{base}/console/sign-in")
    shoot(page, "sign-in-locked")


def test_a_form_with_a_forged_csrf_token_is_refused_and_changes_nothing(console, store):
    base, page = console()
    page.goto(f"{base}/console/integrations")
    page.locator("#policy input[name=csrf_token]").evaluate("input => input.value = 'forged'")
    page.get_by_label("When Marketo cannot answer in time").select_option("allow")
    page.get_by_role("button", name="Save policy").click()
    assert "The CSRF token is invalid." in page.locator("#refused").inner_text()
    assert store.settings.get().failure_mode is None and store.audit.page(limit=5) == []
    page.goto(f"{base}/console/integrations")
    page.get_by_label("When Marketo cannot answer in time").select_option("allow")
    page.get_by_role("button", name="Save policy").click()
    assert "Failure policy saved" in page.locator(".flash-ok").inner_text()
    assert store.settings.get().failure_mode == "allow"


def test_the_switch_is_refused_while_marketo_fails_then_turns_on_and_is_audited(console, simulator, store):
    base, page = console()
    simulator.state.inject_fault("603")  # Marketo: access denied, until cleared
    page.get_by_role("button", name="Test connection").click()
    assert page.locator("#marketo-state").inner_text() == "Not connected"
    reason = page.locator("#marketo-message").inner_text()
    assert reason.startswith("Marketo denied access") and "603" in reason
    page.get_by_role("button", name="Turn the check on").click()
    assert page.locator(".flash-error").inner_text() == f"The check stays off: {reason}"
    assert page.locator("#check-state").inner_text() == "Off" and page.locator("#check-off-banner").is_visible()
    for path in ("mirror", "blocked-sends", "check", "audit"):  # the banner is on every page while it is off
        page.goto(f"{base}/console/{path}")
        assert "every send is allowed" in page.locator("#check-off-banner").inner_text()
    assert store.settings.get().marketo_check_enabled is False

    simulator.state.clear_faults()
    page.goto(f"{base}/console/integrations")
    page.get_by_role("button", name="Test connection").click()
    assert page.locator("#marketo-state").inner_text() == "Connected"
    page.get_by_role("button", name="Turn the check on").click()
    assert page.locator("#check-state").inner_text() == "On"
    assert page.locator("#check-off-banner").count() == 0
    assert store.settings.get().marketo_check_enabled is True
    page.goto(f"{base}/console/audit")
    row = page.locator("#audit tbody tr").first.inner_text()
    assert "ana" in row and "the console" in row and "off → on" in row and "The unsubscribe check" in row
    shoot(page, "audit-after-switch")


def test_a_blocked_send_appears_after_a_check_filters_and_exports(console, simulator, store, tmp_path):
    simulator.state.add_lead("jane@example.com", unsubscribed=True)
    base, page = console(enabled=True)
    # a caller's check, over the same HTTPS (the API needs no session: only the key)
    answer = page.context.request.post(f"{base}/v1/checks", data=CHECK_BODY, headers=CALLER)
    assert answer.status == 200 and answer.json()["results"][0]["decision"] == "deny"
    other = {**CHECK_BODY, "source": "web", "sender": "other@acme.example",
             "messages": [{"id": "msg-2", "recipients": [{"email": "jane@example.com", "type": "to"}]}]}
    assert page.context.request.post(f"{base}/v1/checks", data=other, headers=CALLER).ok
    page.goto(f"{base}/console/blocked-sends")
    rows = page.locator("#blocked-sends tbody tr")
    assert rows.count() == 2 and "other@acme.example" in rows.first.inner_text()  # newest first
    assert "2 blocked sends" in page.locator("#chart-title").text_content()
    assert page.locator("#chart rect").count() >= 1

    page.get_by_label("Sender").fill("rep@")
    page.get_by_role("button", name="Filter").click()
    assert rows.count() == 1 and "msg-1" in rows.first.inner_text()
    shoot(page, "blocked-sends-filtered")
    # (Chromium cancels a download from a site whose certificate it does not trust: the browser's own request
    # context fetches the link instead, with the session cookie the page has.)
    export = page.context.request.get(base + page.get_by_role("link", name="Export CSV").get_attribute("href"))
    assert export.headers["content-type"].startswith("text/csv")
    assert export.headers["content-disposition"] == "attachment; filename=blocked-sends.csv"
    exported = list(csv.DictReader(io.StringIO(export.text())))
    assert [(row["recipient"], row["sender"], row["message_id"]) for row in exported] == [
        ("jane@example.com", "rep@acme.example", "msg-1")]

    page.get_by_label("Recipient").fill("nobody")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("#no-blocked-sends").inner_text() == "No blocked sends match this filter."


def test_checking_addresses_answers_why_and_logs_nothing(console, simulator, store):
    simulator.state.add_lead("jane@example.com", unsubscribed=True)
    simulator.state.add_lead("bob@example.com")
    base, page = console(enabled=True)
    page.goto(f"{base}/console/check")
    page.get_by_label("Addresses, one a line or separated by commas").fill("jane@example.com, bob@example.com\nnot-an-address")
    page.get_by_role("button", name="Check").click()
    rows = [row.inner_text() for row in page.locator("#answers tbody tr").all()]
    assert len(rows) == 3
    assert "deny" in rows[0] and "has unsubscribed" in rows[0] and "Marketo, asked now" in rows[0]
    assert "allow" in rows[1] and "Marketo, asked now" in rows[1]
    assert "deny" in rows[2] and "address validation" in rows[2]
    shoot(page, "check-answers")
    assert store.blocked_sends.page(limit=5) == []


def test_the_first_load_progress_moves_as_the_sync_goes(console, store):
    started = utcnow() - timedelta(hours=1)
    base, page = console(mirror_load_from=started - timedelta(days=310))  # ten windows of 31 days
    windows = window_plan(started - timedelta(days=310), started)
    for window in windows[:2]:
        window.update(export_id="done", rows=100)
    store.sync.acquire_lease("worker-a", 600)
    store.sync.update("worker-a", load_status="loading", load_started_at=started, load_plan=windows,
                      load_source="createdAt windows")
    page.goto(f"{base}/console/mirror")
    first = int(page.locator("#load-progress").get_attribute("value"))
    label = page.locator("label[for=load-progress]").inner_text()
    assert first == 20 and "(createdAt windows): 2 of 10 export jobs" in label
    assert "About 4 h left." in page.locator("#load-eta").inner_text()  # an hour for 2 windows: 4 more for 8
    shoot(page, "mirror-loading")
    walk = {"ids_to": 3000, "next_id": 1501, "export_id": None, "empty_batches": 0, "read": 1500, "rows": None,
            "pace": 2.0}
    store.sync.update("worker-a", load_plan=[windows[-1] | {"export_id": "newest", "rows": 80}, walk],
                      load_source="lead ids")
    page.reload()
    # the newest window's export, then 5 of 10 batches of 300 ids and 3 past the newest: 6 of 14
    assert int(page.locator("#load-progress").get_attribute("value")) == 42
    assert "(lead ids): 6 of 14 steps" in page.locator("label[for=load-progress]").inner_text()
    assert "About 4 s left." in page.locator("#load-eta").inner_text()  # 8 batches at 2 a second
    store.sync.update("worker-a", load_status="complete", load_finished_at=utcnow(), last_success_at=utcnow())
    page.reload()
    assert page.locator("#load-progress").count() == 0 and "Complete" in page.locator("#load-state").inner_text()
    assert page.locator("#mirror-mode").inner_text() == "Mirror"
