"""The Apex kit's sample bodies (integrations/salesforce/samples/*.json) posted as the Apex posts them: the
file's bytes unchanged, signed the Standard Webhooks way with a key made `--require-signature`, over real
HTTP to the gate, which asks the Marketo simulator.

`apex-*.json` carry recipients as record ids (`ToIds`/`CcIds`/`BccIds`): the gate resolves them through the
Salesforce simulator (over HTTPS), seeded here with the records the samples name.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.conftest import ADMIN, serving
from tests.salesforce_support import org, salesforce_settings  # noqa: F401  (org is a fixture)
from tests.test_signatures import PATH, headers

SAMPLES = Path(__file__).resolve().parents[1] / "integrations" / "salesforce" / "samples"
JANE, BOB, CAROL, DAVE = "jane@example.com", "bob@example.com", "carol@example.com", "dave@example.com"
REP = "rep@acme.example"  # the sender Bcc'ing themselves; not in Marketo
# The records apex-single-send-to-ids.json names: Jane's Contact, Bob's Lead, Carol's User; the last id is gone.
RECORDS = {"Contact": [("003Hs00000XyZ1aIAB", JANE)], "Lead": [("00QHs00000AbC2dIAF", BOB)],
           "User": [("005Hs00000Crl01IAF", CAROL)]}
GONE = "003Hs00000Gone1IAA"


@dataclass(frozen=True)
class Expected:
    decision: str
    reason_code: str
    blocked: list[str] = field(default_factory=list)
    deliver_to: list[str] = field(default_factory=list)


# Per sample, one answer per record, in order; Marketo (the simulator) knows Jane as unsubscribed, Bob and
# Carol as subscribed, and neither Dave nor the rep.
EXPECTED = {
    "after-send-single-allow": [Expected("allow", "allowed", deliver_to=[BOB, CAROL])],
    "after-send-single-deny": [Expected("deny", "unsubscribed", blocked=[JANE])],
    "after-send-multi-select": [
        Expected("deny", "unsubscribed", blocked=[JANE]),
        Expected("allow", "allowed", deliver_to=[BOB]),
        Expected("allow", "allowed", deliver_to=[DAVE]),
    ],
    "flow-single-send-allow": [Expected("allow", "allowed", deliver_to=[BOB, CAROL])],
    "flow-single-send-deny": [Expected("deny", "unsubscribed", blocked=[JANE])],
    "flow-group-send": [Expected("allow", "allowed", blocked=[JANE], deliver_to=[BOB, CAROL])],
    "flow-campaign-send-invalid-address": [Expected("deny", "invalid_address", blocked=["not-an-address"])],
    "apex-single-send-to-ids": [
        Expected("deny", "unsubscribed", blocked=[JANE]),
        Expected("allow", "allowed", deliver_to=[CAROL]),
        Expected("deny", "unverified", blocked=[GONE]),  # no such record: the failure policy (deny) decides
    ],
}


def sample_names() -> list[str]:
    return sorted(path.stem for path in SAMPLES.glob("*.json"))


@pytest.fixture
def marketo(simulator):
    simulator.state.add_lead(JANE, unsubscribed=True)
    simulator.state.add_lead(BOB, unsubscribed=False)
    simulator.state.add_lead(CAROL, unsubscribed=False)
    return simulator.state


@pytest.fixture
def salesforce_key(store):
    new = store.keys.create("sf-prod", "caller", sources=("salesforce",), require_signature=True)
    return new.key, new.signing_secret


@pytest.fixture
def gate(make_gate, simulator, org):
    """The gate with the check on, Marketo simulated, and Salesforce simulated holding the samples' records."""
    for sobject, records in RECORDS.items():
        for record_id, email in records:
            org.state.add(sobject, {"Id": record_id, "LastName": "Sample", "Email": email})
    return make_gate(simulator, enabled=True, **salesforce_settings(org))


@pytest.fixture
def gate_url(gate, marketo):
    with serving(gate) as url:
        yield url


def post_sample(gate_url: str, key_and_secret, name: str) -> requests.Response:
    key, secret = key_and_secret
    body = (SAMPLES / f"{name}.json").read_bytes()
    signed = headers(key, secret, body, webhook_id=f"msg_{name}")
    return requests.post(gate_url + PATH, data=body, headers={**signed, "Content-Type": "application/json"},
                         timeout=10)


def test_every_sample_has_an_expected_answer():
    assert sample_names() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sample_names())
def test_a_signed_sample_gets_the_expected_answer_per_record(gate_url, salesforce_key, name):
    response = post_sample(gate_url, salesforce_key, name)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["check_id"].startswith("chk_")
    records = json.loads((SAMPLES / f"{name}.json").read_bytes())["records"]
    assert [result["id"] for result in answer["results"]] == [record.get("Id") for record in records]
    got = [
        Expected(result["decision"], result["reason_code"], result["blocked"], result["deliver_to"])
        for result in answer["results"]
    ]
    assert got == EXPECTED[name]
    for result in answer["results"]:
        assert len(result["reason"]) <= 500


def test_the_denied_samples_are_in_the_blocked_send_log(gate, gate_url, salesforce_key):
    for name in sample_names():
        assert post_sample(gate_url, salesforce_key, name).status_code == 200
    items = gate.test_client().get("/v1/admin/blocked-sends?limit=100", headers=ADMIN).get_json()["items"]
    logged = {(item["source"], item["workflow"], item["recipient"], item["message_id"]) for item in items}
    assert ("salesforce", "single_send", JANE, "02sHs00000Jq8nQIAR") in logged  # after-send-single-deny
    assert ("salesforce", "multi_select_send", JANE, "02sHs00000Jq8oAIAR") in logged
    assert ("salesforce", "single_send", JANE, None) in logged  # flow-built: the email has no Id yet
    assert ("salesforce", "campaign_send", "not-an-address", None) in logged
    assert all(item["recipient"] not in (BOB, CAROL, DAVE, REP) for item in items)


def test_a_sample_signed_with_another_secret_is_refused(gate_url, salesforce_key, store):
    key, _secret = salesforce_key
    other = store.keys.create("sf-sandbox", "caller", sources=("salesforce",), require_signature=True)
    response = post_sample(gate_url, (key, other.signing_secret), "flow-single-send-deny")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
