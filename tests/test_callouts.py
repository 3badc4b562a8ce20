"""The three callouts end to end: the gate's endpoints, a real database, and the Marketo simulator over HTTP."""
import json

import pytest

from tests.conftest import ADMIN, CALLER


@pytest.fixture
def leads(simulator):
    state = simulator.state
    state.add_lead("jane@example.com", unsubscribed=True)
    state.add_lead("Bob@Example.com", unsubscribed=False)
    state.add_lead("dup@example.com", unsubscribed=False)
    state.add_lead("dup@example.com", unsubscribed=True)
    return state


def blocked_log(client):
    response = client.get("/v1/admin/blocked-sends?limit=500", headers=ADMIN)
    assert response.status_code == 200
    return response.get_json()["items"]


def lookups(state):
    return state.stats()["calls"].get("leads", 0)


def test_generic_multi_select_denies_only_the_message_with_an_unsubscribed_recipient(client, leads):
    body = {
        "source": "web",
        "workflow": "multi_select_send",
        "sender": "rep@acme.example",
        "messages": [
            {"id": "msg-1", "recipients": [{"email": "jane@example.com", "type": "to"}]},
            {"id": "msg-2", "recipients": [{"email": "Bob <bob@example.com>", "type": "cc"}]},
        ],
    }
    response = client.post("/v1/checks", json=body, headers=CALLER)
    assert response.status_code == 200
    answer = response.get_json()
    assert answer["check_id"].startswith("chk_") and answer["enabled"] is True
    first, second = answer["results"]
    assert first["id"] == "msg-1" and first["decision"] == "deny" and first["reason_code"] == "unsubscribed"
    assert first["reason"] == "Not sent: jane@example.com has unsubscribed from email in Marketo."
    assert first["deliver_to"] == []
    assert first["recipients"] == [
        {"email": "jane@example.com", "type": "to", "decision": "deny", "reason_code": "unsubscribed",
         "reason": "jane@example.com has unsubscribed from email in Marketo.", "checked_via": "live"}
    ]
    assert second["decision"] == "allow" and second["deliver_to"] == ["bob@example.com"]
    assert second["recipients"][0]["reason_code"] == "allowed"

    (entry,) = blocked_log(client)
    assert entry["check_id"] == answer["check_id"]
    assert (entry["source"], entry["workflow"], entry["sender"], entry["recipient"], entry["reason_code"], entry["message_id"]) == (
        "web", "multi_select_send", "rep@acme.example", "jane@example.com", "unsubscribed", "msg-1")


def test_repeat_check_is_answered_from_the_cache_without_a_marketo_call(client, leads):
    body = {"workflow": "single_send", "messages": [{"recipients": [{"email": "JANE@example.com"}, {"email": "new@example.com"}]}]}
    first = client.post("/v1/checks", json=body, headers=CALLER).get_json()
    calls = lookups(leads)
    second = client.post("/v1/checks", json=body, headers=CALLER).get_json()
    assert lookups(leads) == calls == 1
    assert [r["checked_via"] for r in first["results"][0]["recipients"]] == ["live", "live"]
    assert [r["checked_via"] for r in second["results"][0]["recipients"]] == ["cache", "cache"]
    assert [r["reason_code"] for r in second["results"][0]["recipients"]] == ["unsubscribed", "not_in_marketo"]


def test_email_with_several_leads_is_denied_if_any_of_them_unsubscribed(client, leads):
    answer = client.post("/v1/hooks/email-client", json={"client": "gmail", "to": ["dup@example.com"]}, headers=CALLER).get_json()
    assert answer["decision"] == "deny" and answer["blocked"] == ["dup@example.com"]


@pytest.mark.parametrize("workflow", ["plugin_send", "single_send", "campaign_send", "multi_select_send"])
def test_unsubscribed_bcc_denies_the_message_in_every_whole_message_workflow(client, leads, workflow):
    body = {"workflow": workflow, "messages": [{"id": "m", "recipients": [
        {"email": "bob@example.com", "type": "to"}, {"email": "jane@example.com", "type": "bcc"}]}]}
    (result,) = client.post("/v1/checks", json=body, headers=CALLER).get_json()["results"]
    assert result["decision"] == "deny" and result["blocked"] == ["jane@example.com"]


def test_group_send_drops_unsubscribed_and_logs_each_dropped_recipient(client, leads):
    body = {"workflow": "group_send", "sender": "rep@acme.example", "messages": [{"id": "blast", "recipients": [
        {"email": "jane@example.com"}, {"email": "bob@example.com"}, {"email": "dup@example.com", "type": "bcc"},
        {"email": "stranger@example.com"}]}]}
    (result,) = client.post("/v1/checks", json=body, headers=CALLER).get_json()["results"]
    assert result["decision"] == "allow"
    assert result["deliver_to"] == ["bob@example.com", "stranger@example.com"]
    assert sorted(e["recipient"] for e in blocked_log(client)) == ["dup@example.com", "jane@example.com"]


def test_group_send_with_nobody_left_is_denied(client, leads):
    body = {"workflow": "group_send", "messages": [{"recipients": [{"email": "jane@example.com"}]}]}
    (result,) = client.post("/v1/checks", json=body, headers=CALLER).get_json()["results"]
    assert (result["decision"], result["reason_code"]) == ("deny", "no_recipients_left")


def test_salesforce_records_as_apex_serializes_them(client, leads):
    # Apex's JSON.serialize: attributes first, null fields present, unset fields absent, any key order.
    raw = (
        '{"records":[{"attributes":{"type":"EmailMessage","url":"/services/data/v62.0/sobjects/EmailMessage/02s1"},'
        '"ToAddress":"bob@example.com; JANE@example.com","Id":"02s1","CcAddress":null,"BccAddress":null,'
        '"FromAddress":"rep@acme.example","Subject":"Hello","RelatedToId":"006xx"},'
        '{"Subject":"Hi","Id":"02s2","attributes":{"url":"/services/data/v62.0/sobjects/EmailMessage/02s2","type":"EmailMessage"},'
        '"ToAddress":"bob@example.com;","FromAddress":"rep@acme.example"}],'
        '"userId":"005xx","workflow":"single_send"}'
    )
    response = client.post("/v1/hooks/salesforce", data=raw, content_type="application/json", headers=CALLER)
    assert response.status_code == 200
    answer = response.get_json()
    assert [r["id"] for r in answer["results"]] == ["02s1", "02s2"]
    denied, allowed = answer["results"]
    assert denied["decision"] == "deny" and denied["blocked"] == ["jane@example.com"] and denied["deliver_to"] == []
    assert allowed["decision"] == "allow" and allowed["blocked"] == [] and allowed["deliver_to"] == ["bob@example.com"]
    (entry,) = blocked_log(client)
    assert (entry["source"], entry["sender"], entry["message_id"]) == ("salesforce", "rep@acme.example", "02s1")


def test_salesforce_group_send_record_keeps_its_other_recipients(client, leads):
    body = {"workflow": "group_send", "records": [{"attributes": {"type": "EmailMessage"}, "Id": "02s9",
            "ToAddress": "jane@example.com", "CcAddress": "bob@example.com", "BccAddress": "new@example.com"}]}
    (result,) = client.post("/v1/hooks/salesforce", json=body, headers=CALLER).get_json()["results"]
    assert result["decision"] == "allow" and result["deliver_to"] == ["bob@example.com", "new@example.com"]


def test_outlook_email_address_details_and_name_strings(client, leads):
    body = {"client": "outlook", "sender": "rep@acme.example",
            "to": [{"emailAddress": "Jane@Example.com", "displayName": "Jane", "recipientType": "externalUser"}],
            "cc": ["Bob Builder <bob@example.com>"], "bcc": [], "subject": "Hello"}
    response = client.post("/v1/hooks/email-client", json=body, headers=CALLER)
    assert response.status_code == 200
    answer = response.get_json()
    assert answer["decision"] == "deny" and answer["reason_code"] == "unsubscribed"
    assert answer["reason"] == "Not sent: jane@example.com has unsubscribed from email in Marketo."
    assert answer["blocked"] == ["jane@example.com"]
    assert [(r["email"], r["type"], r["checked_via"]) for r in answer["recipients"]] == [
        ("jane@example.com", "to", "live"), ("bob@example.com", "cc", "live")]
    assert blocked_log(client)[0]["workflow"] == "plugin_send"


def test_malformed_address_denies_that_recipient_without_failing_the_request(client, leads):
    body = {"client": "outlook", "to": ["bob@example.com", "bob at example dot com"]}
    answer = client.post("/v1/hooks/email-client", json=body, headers=CALLER).get_json()
    assert answer["decision"] == "deny" and answer["reason_code"] == "invalid_address"
    assert answer["recipients"][1] == {
        "email": "bob at example dot com", "type": "to", "decision": "deny", "reason_code": "invalid_address",
        "reason": "'bob at example dot com' is not a valid email address.", "checked_via": "validation"}


def test_check_turned_off_allows_without_asking_marketo(make_gate, simulator, leads):
    client = make_gate(simulator, enabled=False).test_client()
    answer = client.post("/v1/hooks/email-client", json={"client": "outlook", "to": ["jane@example.com"]}, headers=CALLER).get_json()
    assert answer["enabled"] is False
    assert (answer["decision"], answer["reason_code"]) == ("allow", "check_disabled")
    assert answer["recipients"][0]["checked_via"] == "setting"
    assert simulator.state.stats()["rest_calls"] == 0


def test_admin_key_may_also_call_the_callouts(client, leads):
    response = client.post("/v1/hooks/email-client", json={"client": "outlook", "to": ["bob@example.com"]}, headers=ADMIN)
    assert response.status_code == 200


def test_answer_is_json_with_the_documented_keys_for_each_endpoint(client, leads):
    generic = client.post("/v1/checks", json={"workflow": "single_send", "messages": [{"recipients": [{"email": "a@example.com"}]}]},
                          headers=CALLER).get_json()
    assert set(generic) == {"check_id", "enabled", "results"}
    assert set(generic["results"][0]) == {"id", "decision", "reason_code", "reason", "deliver_to", "blocked", "recipients"}
    email_client = client.post("/v1/hooks/email-client", json={"client": "gmail", "to": ["a@example.com"]}, headers=CALLER).get_json()
    assert {"check_id", "decision", "reason_code", "reason", "blocked", "recipients"} <= set(email_client)
    json.dumps(email_client)
