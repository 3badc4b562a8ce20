"""The admin API: the global switch (off until turned on, only on while Marketo works) and the blocked-send log."""
import csv
import io

from tests.conftest import ADMIN, CALLER


def test_check_is_off_until_an_admin_turns_it_on(make_gate, simulator):
    client = make_gate(simulator).test_client()
    settings = client.get("/v1/admin/settings", headers=ADMIN).get_json()
    assert settings["marketo_check_enabled"] is False
    assert settings["failure_mode"] == "deny"
    assert settings["marketo"]["connected"] is True and settings["marketo"]["configured"] is True

    response = client.patch("/v1/admin/settings", json={"marketo_check_enabled": True}, headers=ADMIN)
    assert response.status_code == 200
    assert response.get_json()["marketo_check_enabled"] is True
    assert response.get_json()["updated_by"] == "test-admin"
    assert client.get("/v1/admin/settings", headers=ADMIN).get_json()["marketo_check_enabled"] is True


def test_turning_on_while_marketo_refuses_the_credentials_is_409_and_stays_off(make_gate, simulator):
    client = make_gate(simulator, marketo_client_secret="wrong").test_client()
    response = client.patch("/v1/admin/settings", json={"marketo_check_enabled": True}, headers=ADMIN)
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "marketo_not_connected" and "refused" in error["message"]
    settings = client.get("/v1/admin/settings", headers=ADMIN).get_json()
    assert settings["marketo_check_enabled"] is False and settings["marketo"]["connected"] is False


def test_turning_on_while_marketo_is_down_is_409(make_gate, simulator):
    client = make_gate(simulator, check_timeout=1.0).test_client()
    simulator.state.inject_fault("611")
    response = client.patch("/v1/admin/settings", json={"marketo_check_enabled": True}, headers=ADMIN)
    assert response.status_code == 409


def test_turning_on_without_marketo_configured_is_409(make_gate):
    client = make_gate().test_client()
    response = client.patch("/v1/admin/settings", json={"marketo_check_enabled": True}, headers=ADMIN)
    assert response.status_code == 409
    assert "not configured" in response.get_json()["error"]["message"]
    assert client.get("/v1/admin/settings", headers=ADMIN).get_json()["marketo"]["configured"] is False


def test_turning_off_never_needs_marketo(make_gate, simulator):
    client = make_gate(simulator, enabled=True).test_client()
    simulator.stop()
    response = client.patch("/v1/admin/settings", json={"marketo_check_enabled": False}, headers=ADMIN)
    assert response.status_code == 200 and response.get_json()["marketo_check_enabled"] is False


def send_blocked(client, count):
    for i in range(count):
        body = {"workflow": "single_send", "sender": "rep@acme.example",
                "messages": [{"id": f"m{i}", "recipients": [{"email": f"bad{i}"}]}]}
        assert client.post("/v1/checks", json=body, headers=CALLER).status_code == 200


def test_blocked_sends_page_newest_first_with_a_cursor(client):
    send_blocked(client, 5)
    first = client.get("/v1/admin/blocked-sends?limit=2", headers=ADMIN).get_json()
    assert [item["message_id"] for item in first["items"]] == ["m4", "m3"]
    assert first["next_cursor"]
    second = client.get(f"/v1/admin/blocked-sends?limit=2&cursor={first['next_cursor']}", headers=ADMIN).get_json()
    assert [item["message_id"] for item in second["items"]] == ["m2", "m1"]
    third = client.get(f"/v1/admin/blocked-sends?limit=2&cursor={second['next_cursor']}", headers=ADMIN).get_json()
    assert [item["message_id"] for item in third["items"]] == ["m0"] and third["next_cursor"] is None
    item = third["items"][0]
    assert set(item) == {"at", "check_id", "source", "workflow", "sender", "recipient", "reason_code", "message_id"}
    assert (item["recipient"], item["reason_code"], item["sender"]) == ("bad0", "invalid_address", "rep@acme.example")


def test_blocked_sends_rejects_a_forged_cursor_and_bad_limits(client):
    for query in ("cursor=abc", "cursor=YnM6eA", "limit=0", "limit=501", "limit=x", "format=xml", "colour=red"):
        response = client.get(f"/v1/admin/blocked-sends?{query}", headers=ADMIN)
        assert response.status_code == 422, query
        assert response.mimetype == "application/json"


def test_blocked_sends_as_csv(client):
    send_blocked(client, 3)
    response = client.get("/v1/admin/blocked-sends?format=csv", headers=ADMIN)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [row["message_id"] for row in rows] == ["m2", "m1", "m0"]
    assert list(rows[0]) == ["at", "check_id", "source", "workflow", "sender", "recipient", "reason_code", "message_id"]
    paged = client.get("/v1/admin/blocked-sends?format=csv&limit=1", headers=ADMIN)
    assert len(list(csv.DictReader(io.StringIO(paged.get_data(as_text=True))))) == 1
    assert paged.headers["X-Next-Cursor"]


def test_csv_export_neutralizes_spreadsheet_formulas(client):
    body = {"workflow": "single_send", "messages": [{"id": "=HYPERLINK(\"http://evil\")", "recipients": [{"email": "@SUM(1)"}]}]}
    client.post("/v1/checks", json=body, headers=CALLER)
    rows = list(csv.DictReader(io.StringIO(client.get("/v1/admin/blocked-sends?format=csv", headers=ADMIN).get_data(as_text=True))))
    assert rows[0]["message_id"].startswith("'=") and rows[0]["recipient"] == "'@SUM(1)"


def test_switch_flipped_through_this_process_is_seen_at_once_despite_the_settings_cache(make_gate, simulator, store):
    client = make_gate(simulator, enabled=True, settings_cache_seconds=60).test_client()
    body = {"client": "outlook", "to": ["someone@example.com"]}
    assert client.post("/v1/hooks/email-client", json=body, headers=CALLER).get_json()["enabled"] is True
    # Another process turning the check off is seen once the cache expires, not before ...
    store.settings.update({"marketo_check_enabled": False}, updated_by="elsewhere")
    assert client.post("/v1/hooks/email-client", json=body, headers=CALLER).get_json()["enabled"] is True
    # ... while an admin's change through this process applies to the very next check.
    assert client.patch("/v1/admin/settings", json={"marketo_check_enabled": False}, headers=ADMIN).status_code == 200
    assert client.post("/v1/hooks/email-client", json=body, headers=CALLER).get_json()["enabled"] is False
