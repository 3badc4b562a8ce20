"""CORS for browser add-ins: the preflight's headers (Flask test client), then a real browser — Debian's chromium
driven by Playwright — on an add-in page served from another origin, calling the gate over HTTP."""
from __future__ import annotations

import json
from contextlib import contextmanager

import pytest

from gateway.config import ConfigError, load_config
from tests.conftest import ADMIN, CALLER, CALLER_KEY, serving

ADDIN = "https://addin.example.com"
PREFLIGHT = {"Origin": ADDIN, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization,content-type"}
EMAIL_CLIENT_BODY = {"client": "outlook", "sender": "rep@acme.example", "subject": "Hello",
                     "to": [{"emailAddress": "jane@example.com", "displayName": "Jane"}]}
CORS_HEADERS = ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
                "Access-Control-Allow-Credentials", "Access-Control-Max-Age", "Access-Control-Expose-Headers")


def cors_headers(response) -> dict:
    return {name: response.headers[name] for name in CORS_HEADERS if name in response.headers}


@pytest.fixture
def unsubscribed(simulator):
    simulator.state.add_lead("jane@example.com", unsubscribed=True)
    return simulator


@pytest.fixture
def cors_client(make_gate, unsubscribed):
    return make_gate(unsubscribed, enabled=True, cors_origins=(ADDIN, "http://localhost:3000")).test_client()


# --- the headers, asked directly -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/hooks/email-client", "/v1/checks"])
def test_preflight_from_a_listed_origin_needs_no_key_and_checks_nothing(cors_client, path, store, unsubscribed):
    response = cors_client.options(path, headers=PREFLIGHT)
    assert response.status_code == 200
    assert cors_headers(response) == {
        "Access-Control-Allow-Origin": ADDIN,
        "Access-Control-Allow-Methods": "OPTIONS, POST",
        "Access-Control-Allow-Headers": "authorization, content-type",
        "Access-Control-Max-Age": "7200",
        "Access-Control-Expose-Headers": "Retry-After",
    }  # and no Access-Control-Allow-Credentials: the gate takes no cookies
    assert "Origin" in response.headers.get_all("Vary") or "Origin" in response.headers["Vary"]
    assert response.get_data() == b""
    assert store.blocked_sends.page(limit=10) == [] and unsubscribed.state.stats()["rest_calls"] == 0


@pytest.mark.parametrize("origin", [ADDIN, "https://elsewhere.example.com", None])
def test_answers_on_browser_paths_vary_by_origin_once(cors_client, origin):
    """A cache must not give one origin's answer to another: `Vary: Origin`, once, whether or not the origin was
    allowed (Flask-Cors adds it when it answers for an origin; the gate's secure headers otherwise)."""
    headers = {**CALLER, **({"Origin": origin} if origin else {})}
    response = cors_client.post("/v1/hooks/email-client", json=EMAIL_CLIENT_BODY, headers=headers)
    assert response.status_code == 200
    varies = [part.strip() for value in response.headers.get_all("Vary") for part in value.split(",")]
    assert varies.count("Origin") == 1, response.headers.get_all("Vary")
    assert "Vary" not in cors_client.get("/healthz", headers=headers).headers  # not a browser path


def test_preflight_allows_only_the_two_headers_and_post(cors_client):
    asked = {**PREFLIGHT, "Access-Control-Request-Headers": "authorization, content-type, x-requested-with, cookie"}
    response = cors_client.options("/v1/hooks/email-client", headers=asked)
    assert response.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    delete = cors_client.options("/v1/hooks/email-client", headers={**PREFLIGHT, "Access-Control-Request-Method": "DELETE"})
    assert "Access-Control-Allow-Methods" not in delete.headers


@pytest.mark.parametrize("origin", ["https://evil.example.com", "https://addin.example.com.evil.example",
                                    "http://addin.example.com", "https://addin.example.com:8443", "null"])
def test_preflight_from_an_origin_not_listed_gets_no_cors_headers(cors_client, origin):
    response = cors_client.options("/v1/hooks/email-client", headers={**PREFLIGHT, "Origin": origin})
    assert cors_headers(response) == {}


def test_origins_match_exactly_but_without_regard_to_case(cors_client):
    response = cors_client.options("/v1/checks", headers={**PREFLIGHT, "Origin": "http://localhost:3000"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    response = cors_client.options("/v1/checks", headers={**PREFLIGHT, "Origin": "HTTPS://ADDIN.EXAMPLE.COM"})
    assert response.headers["Access-Control-Allow-Origin"] == "HTTPS://ADDIN.EXAMPLE.COM"


@pytest.mark.parametrize("path", ["/v1/hooks/salesforce", "/v1/admin/settings", "/v1/admin/blocked-sends", "/healthz"])
def test_no_cors_outside_the_browser_callouts(cors_client, path):
    assert cors_headers(cors_client.options(path, headers=PREFLIGHT)) == {}
    assert cors_headers(cors_client.get(path, headers={"Origin": ADDIN, **ADMIN})) == {}


def test_answers_to_a_listed_origin_carry_cors_headers_errors_too(cors_client):
    answer = cors_client.post("/v1/hooks/email-client", json=EMAIL_CLIENT_BODY, headers={"Origin": ADDIN, **CALLER})
    assert answer.status_code == 200 and answer.get_json()["decision"] == "deny"
    assert cors_headers(answer) == {"Access-Control-Allow-Origin": ADDIN, "Access-Control-Expose-Headers": "Retry-After"}
    # an add-in must be able to read why it was refused
    refused = cors_client.post("/v1/hooks/email-client", json=EMAIL_CLIENT_BODY, headers={"Origin": ADDIN})
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == ADDIN


def test_no_origin_header_no_cors_headers(cors_client):
    response = cors_client.post("/v1/hooks/email-client", json=EMAIL_CLIENT_BODY, headers=CALLER)
    assert response.status_code == 200 and cors_headers(response) == {}
    assert cors_headers(cors_client.options("/v1/checks")) == {}  # the allow-list is never listed


def test_without_configured_origins_there_are_no_cors_headers_at_all(make_gate, unsubscribed):
    client = make_gate(unsubscribed, enabled=True).test_client()
    assert cors_headers(client.options("/v1/hooks/email-client", headers=PREFLIGHT)) == {}
    answer = client.post("/v1/hooks/email-client", json=EMAIL_CLIENT_BODY, headers={"Origin": ADDIN, **CALLER})
    assert answer.status_code == 200 and cors_headers(answer) == {}
    assert "Vary" not in answer.headers


def test_cors_origins_configuration():
    base = {"SECRET_KEY": "x"}
    assert load_config(base).cors_origins == ()
    origins = " https://Addin.Example.com/ ,http://localhost:3000,https://addin.example.com"
    assert load_config({**base, "GATEWAY_CORS_ORIGINS": origins}).cors_origins == (
        "https://addin.example.com", "http://localhost:3000")
    extension = "chrome-extension://abcdefghijklmnopabcdefghijklmnop"  # a Chrome extension's origin (the Gmail kit)
    assert load_config({**base, "GATEWAY_CORS_ORIGINS": extension.upper()}).cors_origins == (extension,)
    for bad in ("*", "https://*.example.com", "addin.example.com", "https://addin.example.com/taskpane.html",
                "ftp://addin.example.com", "https://addin.example.com:port", "chrome-extension://not-an-extension-id",
                "chrome-extension://*", "chrome-extension://abcdefghijklmnopabcdefghijklmnop/options.html"):
        with pytest.raises(ConfigError, match="GATEWAY_CORS_ORIGINS"):
            load_config({**base, "GATEWAY_CORS_ORIGINS": bad})


# --- a real browser ------------------------------------------------------------------------------------------

ADDIN_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Unsubscribe gate add-in</title></head>
<body>
<button id="send">Send</button>
<p id="result"></p>
<script>
const GATE = %(gate)s, KEY = %(key)s, MESSAGE = %(message)s;
document.getElementById("send").addEventListener("click", async () => {
  const out = document.getElementById("result");
  delete out.dataset.done;
  try {
    const response = await fetch(GATE + "/v1/hooks/email-client", {
      method: "POST",
      headers: {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"},
      body: JSON.stringify(MESSAGE),
    });
    const answer = await response.json();
    out.dataset.status = response.status;
    out.dataset.retryAfter = response.headers.get("Retry-After") || "";
    if (response.ok) {
      out.dataset.decision = answer.decision;
      out.textContent = answer.decision + ": " + answer.reason;
    } else {
      out.textContent = answer.error.code + ": " + answer.error.message;
    }
  } catch (error) {
    out.dataset.error = error.name;
    out.textContent = error.name + ": " + error.message;
  }
  out.dataset.done = "yes";
});
</script>
</body></html>
"""


@contextmanager
def addin_site():
    """A static add-in page on its own port, so its origin differs from the gate's. Yields (origin, set_page)."""
    page = {"html": ""}

    def site(environ, start_response):
        if environ["PATH_INFO"] != "/taskpane.html":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [page["html"].encode()]

    def set_page(gate_url: str, key: str = CALLER_KEY) -> None:
        page["html"] = ADDIN_PAGE % {"gate": json.dumps(gate_url), "key": json.dumps(key),
                                     "message": json.dumps(EMAIL_CLIENT_BODY)}

    with serving(site) as origin:
        yield origin, set_page


def click_send(browser, url: str) -> dict:
    context = browser.new_context()
    try:
        page = context.new_page()
        console = []
        page.on("console", lambda message: console.append(message.text))
        page.goto(url)
        results = []
        for _ in range(2 if "twice" in url else 1):
            page.click("#send")
            page.wait_for_selector("#result[data-done]", timeout=15_000)
            results.append(page.eval_on_selector("#result", "e => ({text: e.textContent, ...e.dataset})"))
        return {"results": results, "console": console}
    finally:
        context.close()


def test_browser_addin_on_the_list_gets_the_answer(browser, make_gate, unsubscribed, store):
    with addin_site() as (origin, set_page):
        gate = make_gate(unsubscribed, enabled=True, cors_origins=(origin,))
        with serving(gate) as gate_url:
            set_page(gate_url)
            (result,) = click_send(browser, f"{origin}/taskpane.html")["results"]
    assert result["status"] == "200" and result["decision"] == "deny", result
    assert result["text"] == "deny: Not sent: jane@example.com has unsubscribed from email in Marketo."
    assert len(store.blocked_sends.page(limit=10)) == 1


@pytest.mark.parametrize("listed", [("https://addin.example.com",), ()], ids=["other-origin-listed", "none-listed"])
def test_browser_addin_not_on_the_list_is_refused_by_the_browser(browser, make_gate, unsubscribed, store, listed):
    with addin_site() as (origin, set_page):
        gate = make_gate(unsubscribed, enabled=True, cors_origins=listed)
        with serving(gate) as gate_url:
            set_page(gate_url)
            seen = click_send(browser, f"{origin}/taskpane.html")
    (result,) = seen["results"]
    assert result.get("error") == "TypeError" and result["text"] == "TypeError: Failed to fetch", result
    assert "decision" not in result
    assert any("CORS" in line for line in seen["console"]), seen["console"]
    # the preflight failed, so the POST never left the browser: nothing was checked or logged
    assert store.blocked_sends.page(limit=10) == []
    assert unsubscribed.state.stats()["rest_calls"] == 0


def test_browser_addin_can_read_a_rate_limit_answer(browser, make_gate, unsubscribed):
    with addin_site() as (origin, set_page):
        gate = make_gate(unsubscribed, enabled=True, cors_origins=(origin,), rate_limit="1 per minute")
        with serving(gate) as gate_url:
            set_page(gate_url)
            first, second = click_send(browser, f"{origin}/taskpane.html?twice")["results"]
    assert first["status"] == "200"
    assert second["status"] == "429" and second["text"].startswith("rate_limited: ")
    assert 1 <= int(second["retryAfter"]) <= 60  # readable because the gate exposes Retry-After
