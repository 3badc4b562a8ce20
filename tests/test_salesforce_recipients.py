"""Recipients given as Salesforce record ids (ToIds/CcIds/BccIds) on POST /v1/hooks/salesforce: resolved to
addresses with one SOQL query per object type and batch; what cannot be resolved is `unverified`, decided by
the failure policy, never a 5xx."""
from __future__ import annotations

from tests.conftest import CALLER
from tests.salesforce_support import org, salesforce_settings  # noqa: F401

JANE, BOB = "jane@example.com", "bob@example.com"


def post(client, records, workflow="single_send"):
    return client.post("/v1/hooks/salesforce", headers=CALLER, json={"workflow": workflow, "records": records})


def test_ids_of_contacts_leads_and_users_are_checked_as_their_addresses(make_gate, simulator, org):
    simulator.state.add_lead(JANE, unsubscribed=True)
    simulator.state.add_lead(BOB, unsubscribed=False)
    contacts = [org.state.add("Contact", {"LastName": f"C{i}", "Email": f"c{i}@example.com"}) for i in range(250)]
    jane = org.state.add("Contact", {"LastName": "Jane", "Email": "Jane@Example.com"})
    bob = org.state.add("Lead", {"LastName": "Bob", "Email": BOB})
    rita = org.state.add("User", {"Name": "Rita", "Email": "rita@acme.example"})
    app = make_gate(simulator, enabled=True, **salesforce_settings(org))
    org.state.calls.clear()
    response = post(app.test_client(), [
        {"Id": "02s000000000001AAA", "ToIds": [bob], "CcIds": [rita]},
        {"Id": "02s000000000002AAA", "ToIds": [jane[:15]], "BccIds": contacts, "ToAddress": BOB},
    ], workflow="multi_select_send")
    assert response.status_code == 200, response.get_json()
    first, second = response.get_json()["results"]
    assert (first["decision"], first["deliver_to"]) == ("allow", [BOB, "rita@acme.example"])
    assert (second["decision"], second["reason_code"], second["blocked"]) == ("deny", "unsubscribed", [JANE])
    assert {r["email"] for r in second["recipients"]} >= {JANE, BOB, "c0@example.com", "c249@example.com"}
    # 251 Contact ids: two batches of at most 200; one batch each of Leads and Users
    assert org.state.calls["query"] == 4 and org.state.calls["token"] == 1


def test_an_id_nobody_has_is_unverified_and_the_failure_policy_decides(make_gate, simulator, org):
    gone, bad_prefix = "003000000000Gone", "a0B000000000001AAA"
    app = make_gate(simulator, enabled=True, **salesforce_settings(org))
    answer = post(app.test_client(), [{"ToIds": [gone, bad_prefix]}]).get_json()
    (result,) = answer["results"]
    assert (result["decision"], result["reason_code"], result["blocked"]) == ("deny", "unverified", [gone, bad_prefix])
    assert {(r["email"], r["checked_via"]) for r in result["recipients"]} == {(gone, "policy"), (bad_prefix, "policy")}

    allowing = make_gate(simulator, enabled=True, failure_mode="allow", **salesforce_settings(org))
    (result,) = post(allowing.test_client(), [{"ToIds": [gone]}]).get_json()["results"]
    assert (result["decision"], result["recipients"][0]["reason_code"]) == ("allow", "unverified")


def test_salesforce_down_or_not_configured_makes_ids_unverified_never_a_5xx(make_gate, simulator, org):
    contact = org.state.add("Contact", {"LastName": "A", "Email": "a@example.com"})
    org.state.faults.append({"kind": "down", "count": None})
    app = make_gate(simulator, enabled=True, **salesforce_settings(org))
    response = post(app.test_client(), [{"ToIds": [contact], "ToAddress": BOB}])
    assert response.status_code == 200
    (result,) = response.get_json()["results"]
    assert result["blocked"] == [contact] and result["reason_code"] == "unverified"

    unconfigured = make_gate(simulator, enabled=True)
    response = post(unconfigured.test_client(), [{"ToIds": [contact]}])
    assert response.status_code == 200
    assert response.get_json()["results"][0]["reason_code"] == "unverified"


def test_with_the_check_off_ids_are_allowed_like_addresses(make_gate, simulator, org):
    app = make_gate(simulator, enabled=False, **salesforce_settings(org))
    (result,) = post(app.test_client(), [{"ToIds": ["003000000000Gone"]}]).get_json()["results"]
    assert result["decision"] == "allow" and result["recipients"][0]["reason_code"] == "check_disabled"


def test_a_record_needs_an_address_or_an_id_and_ids_must_be_strings(make_gate, simulator):
    client = make_gate(simulator, enabled=True).test_client()
    assert post(client, [{"ToIds": []}]).status_code == 422
    assert post(client, [{"ToIds": [12]}]).status_code == 422
    assert post(client, [{"ToIds": ["x" * 19]}]).status_code == 422
