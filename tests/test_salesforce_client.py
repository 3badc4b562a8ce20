"""The Salesforce client's REST calls, pinned with `responses`: the token, queries and their paging, composite
create and update, re-authentication on INVALID_SESSION_ID, and how failures are told apart."""
from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from gateway.logs import redact_secrets_in_logs
from gateway.salesforce.client import SalesforceClient
from gateway.salesforce.errors import SalesforceAuthError, SalesforceRequestError, SalesforceUnavailable
from gateway.salesforce.interfaces import NOT_CONFIGURED, RecordResult, UnconfiguredSalesforce
from gateway.salesforce.errors import SalesforceNotConfigured

LOGIN = "https://acme.my.salesforce.com"
INSTANCE = "https://acme-instance.my.salesforce.com"
TOKEN_URL = f"{LOGIN}/services/oauth2/token"
DATA = f"{INSTANCE}/services/data/v62.0"
SECRET = "client-secret-value"


def token_body(token: str = "00Dxx!token-one") -> dict:
    return {"access_token": token, "instance_url": INSTANCE, "id": f"{LOGIN}/id/00Dxx/005xx",
            "token_type": "Bearer", "issued_at": "1764216000000", "signature": "sig"}


@pytest.fixture
def calls():
    return []


@pytest.fixture
def client(calls):
    return SalesforceClient(LOGIN, "client-id", SECRET, version="62.0",
                            on_call=lambda kind, outcome: calls.append((kind, outcome)))


@responses.activate
def test_the_token_is_a_client_credentials_form_post_and_its_token_is_the_bearer(client, calls):
    responses.post(TOKEN_URL, json=token_body())
    responses.get(f"{DATA}/query/", json={"totalSize": 1, "done": True, "records": [{"Id": "005A", "Email": "a@b.c"}]})
    assert client.query("SELECT Id, Email FROM User") == [{"Id": "005A", "Email": "a@b.c"}]
    token_call, query_call = responses.calls
    assert parse_qs(token_call.request.body) == {
        "grant_type": ["client_credentials"], "client_id": ["client-id"], "client_secret": [SECRET]}
    assert query_call.request.headers["Authorization"] == "Bearer 00Dxx!token-one"
    assert parse_qs(urlsplit(query_call.request.url).query)["q"] == ["SELECT Id, Email FROM User"]
    assert calls == [("token", "ok"), ("query", "ok")]


@responses.activate
def test_a_query_follows_next_records_url_until_done(client):
    responses.post(TOKEN_URL, json=token_body())
    responses.get(f"{DATA}/query/", json={"totalSize": 3, "done": False, "records": [{"Id": "1"}],
                                         "nextRecordsUrl": "/services/data/v62.0/query/01gXX-1"})
    responses.get(f"{DATA}/query/01gXX-1", json={"totalSize": 3, "done": False, "records": [{"Id": "2"}],
                                                 "nextRecordsUrl": "/services/data/v62.0/query/01gXX-2"})
    responses.get(f"{DATA}/query/01gXX-2", json={"totalSize": 3, "done": True, "records": [{"Id": "3"}]})
    assert [r["Id"] for r in client.query("SELECT Id FROM Contact")] == ["1", "2", "3"]


@responses.activate
def test_composite_create_posts_at_most_200_records_and_reads_each_result_in_order(client):
    responses.post(TOKEN_URL, json=token_body())
    responses.post(f"{DATA}/composite/sobjects", json=[
        {"id": "00T1", "success": True, "errors": []},
        {"success": False, "errors": [{"statusCode": "FIELD_INTEGRITY_EXCEPTION", "message": "bad WhoId",
                                       "fields": ["WhoId"]}]},
    ])
    records = [{"attributes": {"type": "Task"}, "Subject": "a"}, {"attributes": {"type": "Task"}, "Subject": "b"}]
    results = client.create(records)
    assert results == [RecordResult(True, "00T1", None),
                       RecordResult(False, None, "FIELD_INTEGRITY_EXCEPTION: bad WhoId (WhoId)")]
    import json
    assert json.loads(responses.calls[1].request.body) == {"allOrNone": False, "records": records}
    with pytest.raises(ValueError):
        client.create([{"attributes": {"type": "Task"}}] * 201)


@responses.activate
def test_composite_update_is_a_patch(client):
    responses.post(TOKEN_URL, json=token_body())
    responses.patch(f"{DATA}/composite/sobjects", json=[{"id": "003A", "success": True, "errors": []}])
    assert client.update([{"attributes": {"type": "Contact"}, "Id": "003A", "HasOptedOutOfEmail": True}]) == [
        RecordResult(True, "003A", None)]
    assert responses.calls[1].request.method == "PATCH"


@responses.activate
def test_an_expired_session_gets_one_new_token_and_the_call_once_more(client, calls):
    responses.post(TOKEN_URL, json=token_body("00Dxx!first"))
    responses.post(TOKEN_URL, json=token_body("00Dxx!second"))
    expired = [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}]
    responses.get(f"{DATA}/query/", json=expired, status=401)
    responses.get(f"{DATA}/query/", json={"totalSize": 0, "done": True, "records": []})
    assert client.query("SELECT Id FROM Contact") == []
    bearers = [c.request.headers.get("Authorization") for c in responses.calls if "/query/?" in c.request.url]
    assert bearers == ["Bearer 00Dxx!first", "Bearer 00Dxx!second"]
    assert calls == [("token", "ok"), ("query", "expired"), ("token", "ok"), ("query", "ok")]


@responses.activate
def test_a_session_refused_twice_is_an_auth_error_not_a_loop(client):
    responses.post(TOKEN_URL, json=token_body())
    expired = [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}]
    responses.get(f"{DATA}/query/", json=expired, status=401)
    with pytest.raises(SalesforceAuthError, match="INVALID_SESSION_ID: Session expired or invalid"):
        client.query("SELECT Id FROM Contact")
    assert len([c for c in responses.calls if "/query/?" in c.request.url]) == 2
    assert len([c for c in responses.calls if "oauth2" in c.request.url]) == 2


@responses.activate
def test_refused_credentials_are_shown_in_salesforces_words(client):
    responses.post(TOKEN_URL, json={"error": "invalid_client", "error_description": "invalid client credentials"},
                   status=400)
    with pytest.raises(SalesforceAuthError) as raised:
        client.query("SELECT Id FROM Contact")
    assert str(raised.value) == "invalid_client: invalid client credentials"
    assert not raised.value.temporary


@responses.activate
@pytest.mark.parametrize("status, body", [
    (503, [{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}]),
    (403, [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}]),
])
def test_503_and_the_request_limit_are_temporary(client, status, body):
    responses.post(TOKEN_URL, json=token_body())
    responses.post(f"{DATA}/composite/sobjects", json=body, status=status)
    with pytest.raises(SalesforceUnavailable) as raised:
        client.create([{"attributes": {"type": "Task"}}])
    assert raised.value.temporary and not raised.value.maybe_processed
    assert body[0]["errorCode"] in str(raised.value)


@responses.activate
def test_a_refused_connection_is_temporary_and_surely_not_processed(client):
    import requests

    responses.post(TOKEN_URL, json=token_body())
    responses.post(f"{DATA}/composite/sobjects", body=requests.ConnectTimeout("connect timed out"))
    with pytest.raises(SalesforceUnavailable) as raised:
        client.create([{"attributes": {"type": "Task"}}])
    assert not raised.value.maybe_processed
    responses.post(f"{DATA}/composite/sobjects", body=requests.ReadTimeout("read timed out"))
    responses.replace(responses.POST, f"{DATA}/composite/sobjects", body=requests.ReadTimeout("read timed out"))
    with pytest.raises(SalesforceUnavailable) as raised:
        client.create([{"attributes": {"type": "Task"}}])
    assert raised.value.maybe_processed  # the answer was lost: the outbox reconciles before sending again


@responses.activate
def test_a_malformed_query_is_a_request_error(client):
    responses.post(TOKEN_URL, json=token_body())
    responses.get(f"{DATA}/query/", json=[{"errorCode": "MALFORMED_QUERY", "message": "unexpected token"}], status=400)
    with pytest.raises(SalesforceRequestError, match="MALFORMED_QUERY: unexpected token"):
        client.query("SELECT")


@responses.activate
def test_neither_the_secret_nor_a_token_reaches_a_log(client, caplog):
    redact_secrets_in_logs()
    responses.post(TOKEN_URL, json=token_body("00Dxx!very-secret-token"))
    responses.get(f"{DATA}/query/", json=[{"errorCode": "INVALID_SESSION_ID", "message": "x"}], status=401)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(SalesforceAuthError):
            client.query("SELECT Id FROM Contact")
        logging.getLogger("urllib3.connectionpool").debug("Authorization: Bearer 00Dxx!very-secret-token")
    text = caplog.text + repr(client)
    assert SECRET not in text and "very-secret-token" not in text


def test_the_null_twin_says_salesforce_is_not_configured():
    twin = UnconfiguredSalesforce()
    assert twin.configured is False
    for call in (lambda: twin.query("SELECT Id FROM User"), lambda: twin.create([]), lambda: twin.update([]),
                 lambda: twin.check_connection()):
        with pytest.raises(SalesforceNotConfigured, match="SALESFORCE_LOGIN_URL"):
            call()
    assert "SALESFORCE_CLIENT_SECRET" in NOT_CONFIGURED
