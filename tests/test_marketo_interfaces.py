"""The Marketo seam: the client and its null twin answer the same calls, and a gate without Marketo still answers."""
import inspect
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from gateway.connection import check_marketo_connection
from gateway.marketo import MarketoConfigError
from gateway.marketo.client import MarketoClient
from gateway.marketo.interfaces import NOT_CONFIGURED, MarketoService, UnconfiguredMarketo
from tests.conftest import ADMIN, CALLER

SINCE = datetime(2026, 11, 1, tzinfo=timezone.utc)


def protocol_methods() -> list[str]:
    return [name for name, member in vars(MarketoService).items()
            if not name.startswith("_") and (callable(member) or isinstance(member, property))]


@pytest.mark.parametrize("implementation", [MarketoClient, UnconfiguredMarketo])
@pytest.mark.parametrize("name", protocol_methods())
def test_both_implementations_answer_every_call_of_the_seam_alike(implementation, name):
    assert hasattr(implementation, name), f"{implementation.__name__} lacks {name}"
    expected = getattr(MarketoService, name)
    if callable(expected):
        assert parameters(getattr(implementation, name)) == parameters(expected)


def parameters(method) -> list[tuple]:
    """Names, kinds and defaults: what a caller relies on (annotations are strings in some modules, not others)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(method).parameters.values()]


def test_unconfigured_marketo_fails_every_lookup_as_a_configuration_error_naming_the_settings():
    result = UnconfiguredMarketo().lookup_emails(["a@example.com", "b@example.com", "a@example.com"], timeout=1)

    assert result.unsubscribed == {} and result.not_found == frozenset()
    assert list(result.failed) == ["a@example.com", "b@example.com"]
    for error in result.failed.values():
        assert isinstance(error, MarketoConfigError) and error.message == NOT_CONFIGURED
    assert "MARKETO_BASE_URL" in NOT_CONFIGURED


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.check_connection(timeout=1),
        lambda m: m.paging_token(SINCE),
        lambda m: m.lead_changes_page("P1", ["unsubscribed"]),
        lambda m: m.leads_by_id([1]),
        lambda m: m.create_lead_export(["id"], SINCE, SINCE),
        lambda m: m.enqueue_lead_export("job"),
        lambda m: m.lead_export_status("job"),
        lambda m: m.lead_export_rows("job"),
    ],
    ids=["check_connection", "paging_token", "lead_changes_page", "leads_by_id", "create_lead_export",
         "enqueue_lead_export", "lead_export_status", "lead_export_rows"],
)
def test_unconfigured_marketo_raises_on_every_other_call(call):
    with pytest.raises(MarketoConfigError) as raised:
        call(UnconfiguredMarketo())
    assert raised.value.message == NOT_CONFIGURED


def test_unconfigured_marketo_is_never_stopped_by_marketo_s_quota():
    assert UnconfiguredMarketo().quota_exhausted_until is None


def test_the_connection_test_records_why_marketo_cannot_be_used(store):
    assert check_marketo_connection(UnconfiguredMarketo(), store, timeout=1) == (False, NOT_CONFIGURED)
    settings = store.settings.get()
    assert (settings.marketo_connected, settings.marketo_message) == (False, NOT_CONFIGURED)


def test_a_gate_without_marketo_answers_by_its_failure_policy(make_gate):
    client = make_gate(enabled=True).test_client()
    response = client.post("/v1/hooks/email-client", json={"client": "outlook", "to": ["a@example.com"]},
                           headers=CALLER)
    answer = response.get_json()
    assert response.status_code == 200
    assert (answer["decision"], answer["reason_code"], answer["recipients"][0]["checked_via"]) == (
        "deny", "unverified", "policy")
    status = client.get("/v1/admin/status", headers=ADMIN).get_json()
    assert status["quota_exhausted_until"] is None
    marketo = client.get("/v1/admin/settings", headers=ADMIN).get_json()["marketo"]
    assert marketo == {**marketo, "configured": False, "connected": False, "message": NOT_CONFIGURED}


def test_the_worker_loads_none_of_the_web_app_s_guards():
    """The worker builds its gate (and the log filter) without the rate limiter (`limits`) or Flask-Cors."""
    code = (
        "import sys\n"
        "from gateway import build_gate\n"
        "from gateway.config import GateConfig\n"
        "import gateway.worker\n"
        "build_gate(GateConfig(database_url='sqlite://', secret_key='x', marketo_base_url='http://127.0.0.1:9',"
        " marketo_client_id='id', marketo_client_secret='secret'))\n"
        "print(sorted(m for m in ('limits', 'flask_cors', 'gateway.api') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
