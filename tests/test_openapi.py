"""The OpenAPI spec: generated from the schemas, served, readable in a browser, and fuzzed against the live gate."""
from __future__ import annotations

import os

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from sqlalchemy import func, select

from gateway.api.openapi import build_spec
from gateway.store.models import BlockedSend
from tests.conftest import ADMIN, CALLER, serving

SPEC = build_spec()
schema = schemathesis.openapi.from_dict(SPEC)
# Routes that describe the API rather than being part of it.
UNDESCRIBED = {"/openapi.json", "/docs", "/static/<path:filename>"}


def test_every_route_is_described_and_every_description_is_a_route(make_gate):
    routes: dict[str, set[str]] = {}
    for rule in make_gate().url_map.iter_rules():
        if rule.rule not in UNDESCRIBED:
            routes.setdefault(rule.rule, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    assert routes == {path: set(operations) for path, operations in SPEC["paths"].items()}


def test_spec_is_served_and_says_what_the_contract_fixes(make_gate):
    served = make_gate().test_client().get("/openapi.json").get_json()
    assert served == SPEC
    recipient = served["components"]["schemas"]["EmailClientCallout"]["properties"]["to"]["items"]
    assert [option["type"] for option in recipient["oneOf"]] == ["string", "object"]
    assert served["components"]["schemas"]["CheckRequest"]["additionalProperties"] is False
    errors = served["paths"]["/v1/checks"]["post"]["responses"]
    assert {"400", "401", "403", "413", "415", "422", "429", "503"} <= set(errors)
    assert "409" in served["paths"]["/v1/admin/settings"]["patch"]["responses"]


def test_docs_page_lists_every_endpoint_in_a_real_browser(make_gate, browser, tmp_path):
    with serving(make_gate()) as base:
        page = browser.new_page()
        response = page.goto(f"{base}/docs")
        assert response.status == 200
        shown = page.locator("code.path").all_inner_texts()
        page.screenshot(path=str(tmp_path / "docs.png"), full_page=True)
        page.close()
    assert set(shown) == set(SPEC["paths"])
    assert "default-src 'none'" in response.headers["content-security-policy"]


@pytest.fixture
def live_gate(make_gate, simulator, store):
    simulator.state.add_lead("jane@example.com", unsubscribed=True)
    app = make_gate(simulator, enabled=True, rate_limit=None, check_timeout=2.0)
    with serving(app) as base:
        yield base


def data_snapshot(store):
    with store.session() as session:
        logged = session.scalar(select(func.count()).select_from(BlockedSend))
    return logged, store.settings().marketo_check_enabled, store.settings().failure_mode


@schema.parametrize()
@settings(max_examples=int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "25")), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_fuzzed_requests_get_no_5xx_answers_that_match_the_spec_and_errors_change_nothing(case, live_gate, store):
    headers = ADMIN if case.path.startswith("/v1/admin") else CALLER
    before = data_snapshot(store)
    response = case.call(base_url=live_gate, headers=headers)
    assert response.status_code < 500, response.text[:500]
    # A string the schema allows can still be no email address (a sender of ""): a 422 is right there.
    case.validate_response(response, excluded_checks=[schemathesis.checks.positive_data_acceptance])
    if response.status_code >= 400:
        assert data_snapshot(store) == before, f"{case.method} {case.path} answered {response.status_code} but changed data"


def test_the_live_gate_answers_json_errors_for_routes_it_does_not_have(live_gate):
    response = requests.delete(f"{live_gate}/v1/checks", headers=CALLER, timeout=5)
    assert response.status_code == 405 and response.headers["Content-Type"] == "application/json"
