"""Bad input gets a clear JSON error, never HTML, never a 500, and changes nothing."""
import pytest

from tests.conftest import ADMIN, CALLER

ENDPOINTS = ["/v1/checks", "/v1/hooks/salesforce", "/v1/hooks/email-client"]


@pytest.fixture
def watched(client, simulator, store):
    """Asserts after the test that nothing was logged and Marketo was never asked."""
    yield client
    assert store.blocked_sends.page(limit=10) == []
    assert simulator.state.stats()["rest_calls"] == 0


def error_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()["error"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_no_key_is_401(watched, path):
    error = error_of(watched.post(path, json={}), 401)
    assert error["code"] == "unauthorized"


@pytest.mark.parametrize("header", ["Bearer nope", "Basic dGVzdDp0ZXN0", "Bearer ", "test-caller-key"])
def test_unknown_or_malformed_credentials_are_401(watched, header):
    error_of(watched.post("/v1/checks", json={}, headers={"Authorization": header}), 401)


def test_caller_key_on_admin_endpoint_is_403(watched):
    error = error_of(watched.get("/v1/admin/settings", headers=CALLER), 403)
    assert error["message"] == "Administrator permission required."
    error_of(watched.patch("/v1/admin/settings", json={"marketo_check_enabled": False}, headers=CALLER), 403)
    error_of(watched.get("/v1/admin/blocked-sends", headers=CALLER), 403)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_body_that_is_not_json_is_400(watched, path):
    error = error_of(watched.post(path, data="{not json", content_type="application/json", headers=CALLER), 400)
    assert error["code"] == "invalid_json"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_wrong_content_type_is_415(watched, path):
    error_of(watched.post(path, data='{"workflow": "single_send"}', content_type="text/plain", headers=CALLER), 415)


def test_body_over_the_size_limit_is_413(make_gate, simulator, store):
    client = make_gate(simulator, enabled=True, max_content_length=2048).test_client()
    body = {"workflow": "single_send", "messages": [{"recipients": [{"email": f"p{i}@example.com"} for i in range(200)]}]}
    error_of(client.post("/v1/checks", json=body, headers=CALLER), 413)
    assert store.blocked_sends.page(limit=10) == []


def test_too_many_recipients_is_413(make_gate, simulator, store):
    client = make_gate(simulator, enabled=True, max_recipients=3).test_client()
    body = {"workflow": "group_send", "messages": [{"recipients": [{"email": f"p{i}@example.com"} for i in range(4)]}]}
    error = error_of(client.post("/v1/checks", json=body, headers=CALLER), 413)
    assert error["code"] == "too_many_recipients"
    assert simulator.state.stats()["rest_calls"] == 0


@pytest.mark.parametrize(
    "body, field",
    [
        ({"messages": [{"recipients": [{"email": "a@example.com"}]}]}, "workflow"),
        ({"workflow": "spam_blast", "messages": [{"recipients": [{"email": "a@example.com"}]}]}, "workflow"),
        ({"workflow": "single_send", "messages": []}, "messages"),
        ({"workflow": "single_send", "messages": [{"recipients": []}]}, "messages"),
        ({"workflow": "single_send", "messages": [{"recipients": [{"email": 42}]}]}, "messages"),
        ({"workflow": "single_send", "messages": [{"recipients": [{"email": "a@example.com", "type": "reply-to"}]}]}, "messages"),
        ({"workflow": "single_send", "sender": "not an address", "messages": [{"recipients": [{"email": "a@example.com"}]}]}, "sender"),
        ({"workflow": "single_send", "source": "fax", "messages": [{"recipients": [{"email": "a@example.com"}]}]}, "source"),
        ({"workflow": "single_send", "messages": [{"recipients": [{"email": "a@example.com"}]}], "recipents": []}, "recipents"),
    ],
)
def test_generic_body_of_the_wrong_shape_is_422_with_field_messages(watched, body, field):
    error = error_of(watched.post("/v1/checks", json=body, headers=CALLER), 422)
    assert field in error["fields"]


@pytest.mark.parametrize("body", ["[]", '"text"', "7", "null"])
def test_json_that_is_not_an_object_is_422(watched, body):
    error_of(watched.post("/v1/checks", data=body, content_type="application/json", headers=CALLER), 422)


@pytest.mark.parametrize(
    "body",
    [
        {"workflow": "single_send", "records": [{"attributes": {"type": "EmailMessage"}, "Id": "02s", "ToAddress": None}]},
        {"workflow": "single_send", "records": [{"Id": "02s", "ToAddress": ["a@example.com"]}]},
        {"workflow": "single_send", "records": []},
        {"workflow": "single_send"},
        {"records": [{"ToAddress": "a@example.com"}]},
    ],
)
def test_salesforce_body_of_the_wrong_shape_is_422(watched, body):
    error_of(watched.post("/v1/hooks/salesforce", json=body, headers=CALLER), 422)


@pytest.mark.parametrize(
    "body",
    [
        {"client": "thunderbird", "to": ["a@example.com"]},
        {"client": "outlook"},
        {"client": "outlook", "to": [{"displayName": "No Address"}]},
        {"client": "outlook", "to": "a@example.com"},
        {"client": "gmail", "to": [None]},
    ],
)
def test_email_client_body_of_the_wrong_shape_is_422(watched, body):
    error_of(watched.post("/v1/hooks/email-client", json=body, headers=CALLER), 422)


def test_unknown_path_and_wrong_method_are_json(watched):
    assert error_of(watched.get("/nothing-here"), 404)["code"] == "not_found"
    assert error_of(watched.get("/v1/checks", headers=CALLER), 405)["code"] == "method_not_allowed"


def test_database_down_is_503_not_500(make_gate, simulator, store):
    app = make_gate(simulator, enabled=True, database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    response = app.test_client().post("/v1/hooks/email-client", json={"client": "outlook", "to": ["a@example.com"]}, headers=CALLER)
    assert error_of(response, 503)["code"] == "database_unavailable"


def test_admin_patch_with_wrong_shape_is_422_and_changes_nothing(watched, store):
    for body in ({"marketo_check_enabled": "yes"}, {"marketo_check_enabled": 0}, {"failure_mode": "maybe"}, {},
                 {"colour": "red"}):
        error_of(watched.patch("/v1/admin/settings", json=body, headers=ADMIN), 422)
    assert store.settings.get().marketo_check_enabled is True  # the gate fixture turned it on; still on
    assert store.settings.get().failure_mode is None


def test_nul_characters_in_ids_and_addresses_are_logged_not_a_database_error(client, store):
    body = {"workflow": "single_send", "sender": "rep@acme.example",
            "messages": [{"id": "m\x001", "recipients": [{"email": "bad\x00address"}]}]}
    response = client.post("/v1/checks", json=body, headers=CALLER)
    assert response.status_code == 200
    (row,) = store.blocked_sends.page(limit=10)
    assert (row.message_id, row.recipient) == ("m\ufffd1", "bad\ufffdaddress")
