"""The OpenAPI spec: generated from the schemas, served, readable in a browser, and fuzzed against the live gate.

The fuzz test here is CI's short run (GATEWAY_FUZZ_EXAMPLES, default 25 examples an operation, derandomized);
tests/fuzz_api.py runs the same test with many more examples and prints what the gate answered.
"""
from __future__ import annotations

import os
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from sqlalchemy import func, select

from gateway.api import openapi
from gateway.api.openapi import build_spec
from gateway.store.models import BlockedSend
from tests.conftest import ADMIN, CALLER, serving

SPEC = build_spec()
FUZZ_CONFIG = schemathesis.Config.from_dict({
    # The keys go in the config, not into case.call(): then a case generated without Authorization (a negative
    # one) is really sent without it, and schemathesis expects the 401 it gets.
    # (Both per operation: schemathesis 4.32's fuzzing phase would put a project-wide key over an operation's.)
    "operations": [{"include-path-regex": "^/(v1/admin/|metrics$)", "headers": ADMIN},
                   {"exclude-path-regex": "^/(v1/admin/|metrics$)", "headers": CALLER}],
    # A body over the size limit is rightly a 413, whatever else is wrong with it; 5xx is never right.
    "checks": {"negative_data_rejection": {
        "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]}},
})
schema = schemathesis.openapi.from_dict(SPEC, config=FUZZ_CONFIG)
EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "25"))
SEEDED = "GATEWAY_FUZZ_SEED" in os.environ  # tests/fuzz_api.py --seed: hypothesis draws from that seed instead
# Routes that describe the API rather than being part of it, and Flask's static route.
UNDESCRIBED = {"/openapi.json", "/docs", "/static/<path:filename>"}
# The admin console's HTML pages are for people in a browser, signed in with a session, not API callers.
CONSOLE_PAGES = "/console/"
# What the fuzz test saw, by operation and status ("TRACE 405" for a probe with another method): fuzz_api prints it.
ANSWERED: Counter[tuple[str, str]] = Counter()


def test_spec_is_valid_openapi_3():
    schema.validate()  # against the OpenAPI 3.0 meta-schema
    assert SPEC["openapi"].startswith("3.")
    assert len(list(schema.get_all_operations())) == 11


def test_every_route_is_described_and_every_description_is_a_route(make_gate):
    routes: dict[str, set[str]] = {}
    for rule in make_gate().url_map.iter_rules():
        if rule.rule not in UNDESCRIBED and not rule.rule.startswith(CONSOLE_PAGES):
            routes.setdefault(rule.rule, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    assert routes == {path: set(operations) for path, operations in SPEC["paths"].items()}


def test_spec_and_docs_are_built_once_per_app_and_served_without_a_key(make_gate, monkeypatch):
    app = make_gate()
    client = app.test_client()
    monkeypatch.setattr(openapi, "build_spec", lambda: pytest.fail("the spec was built again for a request"))
    served = client.get("/openapi.json")
    assert served.status_code == 200 and served.get_json() == SPEC
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"] == app.extensions["openapi_docs"][1]


def test_spec_says_what_the_contract_fixes():
    components = SPEC["components"]
    recipient = components["schemas"]["EmailClientCallout"]["properties"]["to"]["items"]
    assert [option["type"] for option in recipient["oneOf"]] == ["string", "object"]
    assert recipient["oneOf"][1]["required"] == ["emailAddress"]
    for name in ("CheckRequest", "Message", "Recipient", "SettingsPatch"):
        assert components["schemas"][name]["additionalProperties"] is False, name
    assert components["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "A gate key: `Authorization: Bearer <key>`."}
    every_error = {"400", "401", "403", "409", "413", "415", "422", "429", "503"}
    for path in ("/v1/checks", "/v1/hooks/salesforce", "/v1/hooks/email-client"):
        operation = SPEC["paths"][path]["post"]
        assert set(operation["responses"]) == {"200"} | every_error, path
        assert operation["security"] == [{"bearer": []}] and operation["description"]
    assert SPEC["paths"]["/v1/hooks/email-client"]["post"]["responses"]["200"]["content"]["application/json"][
        "schema"] == {"$ref": "#/components/schemas/EmailClientAnswer"}
    assert {"check_id", "enabled", "decision", "reason", "blocked", "recipients"} <= set(
        components["schemas"]["EmailClientAnswer"]["required"])
    assert "marketo_not_connected" in SPEC["paths"]["/v1/admin/settings"]["patch"]["responses"]["409"]["description"]
    blocked_sends = SPEC["paths"]["/v1/admin/blocked-sends"]["get"]
    assert [p["name"] for p in blocked_sends["parameters"]] == [
        "limit", "cursor", "format", "recipient", "sender", "source", "workflow", "since", "until"]
    assert set(blocked_sends["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    assert "security" not in SPEC["paths"]["/healthz"]["get"]
    assert "security" not in SPEC["paths"]["/readyz"]["get"]
    assert set(SPEC["paths"]["/readyz"]["get"]["responses"]) == {"200", "503"}
    for path, operations in SPEC["paths"].items():
        for method, operation in operations.items():
            assert operation["summary"] and operation["description"], f"{method} {path}"
            for status, answer in operation["responses"].items():
                if status != "200":
                    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_docs_page_lists_every_endpoint_in_a_real_browser(make_gate, browser, tmp_path):
    console: list[str] = []
    with serving(make_gate()) as base:
        page = browser.new_page()
        page.on("console", lambda message: console.append(message.text))
        response = page.goto(f"{base}/docs")
        assert response.status == 200
        shown_paths = page.locator("code.path").all_inner_texts()
        requests_shown = set(page.locator("a.request-schema").all_inner_texts())
        answers_shown = set(page.locator("a.answer-schema").all_inner_texts())
        # The inline style ran: the CSP lets in exactly what the page needs, and nothing was refused.
        max_width = page.evaluate("getComputedStyle(document.body).maxWidth")
        page.screenshot(path=str(tmp_path / "docs.png"), full_page=True)
        page.close()
    assert sorted(shown_paths) == sorted(path for path, ops in SPEC["paths"].items() for _ in ops)
    assert requests_shown == {"CheckRequest", "SalesforceCallout", "EmailClientCallout", "SettingsPatch", "MarketoPush"}
    assert {"CheckAnswer", "EmailClientAnswer", "Settings", "Status", "BlockedSendsPage", "Error",
            "MarketoPushAnswer"} <= answers_shown
    assert max_width == "992px"
    assert not [text for text in console if "Content Security Policy" in text], console
    csp = response.headers["content-security-policy"]
    assert csp.startswith("default-src 'none'; style-src 'sha256-") and "unsafe" not in csp
    assert (tmp_path / "docs.png").stat().st_size > 10_000


@pytest.fixture
def live_gate(make_gate, simulator, store):
    simulator.state.add_lead("jane@example.com", unsubscribed=True)
    app = make_gate(simulator, enabled=True, rate_limit=None, check_timeout=2.0)
    with serving(app) as base:
        yield base


def data_snapshot(store):
    """What an answer must leave as it was when it is an error: the log of blocked sends and the settings."""
    with store.session() as session:
        logged = session.scalar(select(func.count()).select_from(BlockedSend))
    settings_now = store.settings.get()
    return (logged, settings_now.marketo_check_enabled, settings_now.failure_mode, settings_now.updated_at,
            settings_now.updated_by)


def call_and_check(case, base_url: str, store):
    """One generated request against the live gate: no 5xx, an answer as the spec says, no error that wrote."""
    before = data_snapshot(store)
    response = case.call(base_url=base_url, timeout=30)  # the key comes from FUZZ_CONFIG
    probe = "" if case.method.upper() == case.operation.method.upper() else f"{case.method.upper()} "
    ANSWERED[(case.operation.label, f"{probe}{response.status_code}")] += 1
    assert response.status_code < 500, response.text[:500]
    # Both keys may call what they are sent to: a 403 means the fuzzer sent the wrong key and tested nothing.
    assert response.status_code != 403, f"{case.operation.label}: {response.text[:300]}"
    # positive_data_acceptance is left out: what the spec allows can still be refused for a reason a JSON
    # schema cannot say (a sender of "" is no email address; a Salesforce record with no address at all).
    # The configured key is explicit auth: ignored_auth then probes without it and with a wrong one.
    explicit = case.operation.schema.config.headers_for(operation=case.operation)
    case.validate_response(response, headers=explicit, excluded_checks=[schemathesis.checks.positive_data_acceptance])
    if response.status_code >= 400:
        assert data_snapshot(store) == before, f"{case.method} {case.path} answered {response.status_code} but changed data"
    return response


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=not SEEDED, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.data_too_large])
def test_fuzzed_requests_get_no_5xx_answers_that_match_the_spec_and_errors_change_nothing(case, live_gate, store):
    call_and_check(case, live_gate, store)


def test_the_live_gate_answers_json_errors_for_routes_it_does_not_have(live_gate):
    response = requests.delete(f"{live_gate}/v1/checks", headers=CALLER, timeout=5)
    assert response.status_code == 405 and response.headers["Content-Type"] == "application/json"
    response = requests.get(f"{live_gate}/v1/nothing-here", timeout=5)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
