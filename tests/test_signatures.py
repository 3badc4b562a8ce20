"""Signed callouts (Standard Webhooks): verified over the raw bytes, fresh, and answered once per webhook-id."""
import base64
import hashlib
import hmac
import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from standardwebhooks import Webhook

from gateway.cli import main
from gateway.store import utcnow

PATH = "/v1/hooks/salesforce"
# What Apex's JSON.serialize makes of a wrapper: `records` before `workflow`, `attributes` first in each
# sObject, a null, spaces after separators (as a hand-built Apex string might have), a \u escape, and raw
# UTF-8 — none of which Python's json.dumps would reproduce byte for byte.
APEX_BODY = (
    '{"records": [{"attributes": {"type": "EmailMessage", "url": "/services/data/v62.0/sobjects/EmailMessage/'
    '02s000000000001"}, "Id": "02s000000000001", "ToAddress": "jane@example.com; bob@example.com", '
    '"CcAddress": null, "FromAddress": "rep@acme.example", "Subject": "Gr\\u00fc\\u00dfe \u2014 caf\u00e9"}], '
    '"workflow": "single_send", "userId": "005xx0000012345"}'
).encode()


@pytest.fixture
def leads(simulator):
    simulator.state.add_lead("jane@example.com", unsubscribed=True)
    simulator.state.add_lead("bob@example.com", unsubscribed=False)
    return simulator.state


@pytest.fixture
def signed_key(store):
    new = store.keys.create("sf-prod", "caller", sources=("salesforce",), require_signature=True)
    return new.key, new.signing_secret


@pytest.fixture
def watched(client, store, simulator, leads):
    """For rejections: afterwards nothing is logged, no delivery kept, the key not marked used, Marketo not asked."""
    yield client
    assert rows(store, "blocked_sends") == 0
    assert rows(store, "webhook_deliveries") == 0
    assert all(key.last_used_at is None for key in store.keys.all())
    assert simulator.state.stats()["rest_calls"] == 0


def rows(store, table):
    with store.engine.connect() as connection:
        return connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """What the Apex side does: HMAC-SHA256 over `{id}.{timestamp}.{body}` with the base64-decoded secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(key, secret, body: bytes, *, webhook_id="msg_1", timestamp=None, signature=None):
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Authorization": f"Bearer {key}",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature or sign(secret, webhook_id, timestamp, body),
    }


def post(client, body: bytes, hdrs, path=PATH):
    return client.post(path, data=body, content_type="application/json", headers=hdrs)


def error_of(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == code, error
    return error


def test_cli_prints_a_standard_webhooks_secret_once(store):
    env = {"DATABASE_URL": store.engine.url.render_as_string(hide_password=False)}
    result = CliRunner().invoke(main, ["keys", "create", "sf-prod", "--role", "caller", "--source", "salesforce",
                                       "--require-signature"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    key, secret = lines[1], lines[-1]
    assert key.startswith("gk_") and secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert result.output.count(secret) == 1
    (stored,) = store.keys.all()
    assert stored.require_signature and stored.signing_secret == secret
    assert secret not in repr(stored)
    listing = CliRunner().invoke(main, ["keys", "list"], env=env).output
    assert "sources salesforce\tsigned" in listing and secret not in listing


def test_a_valid_signature_passes(client, leads, signed_key, store):
    key, secret = signed_key
    response = post(client, APEX_BODY, headers(key, secret, APEX_BODY))
    assert response.status_code == 200, response.get_json()
    (result,) = response.get_json()["results"]
    assert result["decision"] == "deny" and result["blocked"] == ["jane@example.com"]
    assert rows(store, "blocked_sends") == 1
    assert store.keys.all()[0].last_used_at is not None


def test_the_standardwebhooks_signer_and_several_signatures_pass(client, leads, signed_key):
    key, secret = signed_key
    now = datetime.now(timezone.utc)
    signature = Webhook(secret).sign("msg_lib", now, APEX_BODY.decode())
    hdrs = headers(key, secret, APEX_BODY, webhook_id="msg_lib", timestamp=int(now.timestamp()),
                   signature=f"v1,{base64.b64encode(b'old secret').decode()}  v2,whatever {signature}")
    assert post(client, APEX_BODY, hdrs).status_code == 200


def test_the_signature_is_over_the_bytes_sent_not_a_reserialization(watched, signed_key):
    key, secret = signed_key
    reserialized = json.dumps(json.loads(APEX_BODY)).encode()
    assert reserialized != APEX_BODY  # the same JSON, other bytes
    # Signed over what a re-serializing gate would see, sent as Apex sent it: refused.
    hdrs = headers(key, secret, APEX_BODY, signature=sign(secret, "msg_1", int(time.time()), reserialized))
    error_of(post(watched, APEX_BODY, hdrs), 401, "invalid_signature")


def test_apex_bytes_signed_as_sent_pass(client, leads, signed_key):
    key, secret = signed_key
    compact = APEX_BODY.replace(b", ", b",").replace(b": ", b":")
    for number, body in enumerate((APEX_BODY, compact)):
        response = post(client, body, headers(key, secret, body, webhook_id=f"msg_{number}"))
        assert response.status_code == 200, response.get_json()


def test_a_tampered_body_is_401(watched, signed_key):
    key, secret = signed_key
    hdrs = headers(key, secret, APEX_BODY)
    tampered = APEX_BODY.replace(b"jane@example.com; ", b"")
    error_of(post(watched, tampered, hdrs), 401, "invalid_signature")


def test_a_tampered_header_is_401(watched, signed_key):
    key, secret = signed_key
    hdrs = headers(key, secret, APEX_BODY)
    hdrs["webhook-id"] = "msg_2"
    error_of(post(watched, APEX_BODY, hdrs), 401, "invalid_signature")


def test_a_wrong_secret_is_401(watched, signed_key):
    key, _secret = signed_key
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    error_of(post(watched, APEX_BODY, headers(key, other, APEX_BODY)), 401, "invalid_signature")


@pytest.mark.parametrize("offset", [-360, 360], ids=["6 minutes old", "6 minutes ahead"])
def test_a_timestamp_over_5_minutes_off_is_401(watched, signed_key, offset):
    key, secret = signed_key
    hdrs = headers(key, secret, APEX_BODY, timestamp=int(time.time()) + offset)
    error = error_of(post(watched, APEX_BODY, hdrs), 401, "stale_signature")
    assert "6 minutes" in error["message"]


def test_a_timestamp_within_5_minutes_passes(client, leads, signed_key):
    key, secret = signed_key
    hdrs = headers(key, secret, APEX_BODY, timestamp=int(time.time()) - 240)
    assert post(client, APEX_BODY, hdrs).status_code == 200


def test_an_unsigned_request_for_a_key_requiring_signatures_is_401(watched, signed_key):
    key, _secret = signed_key
    error = error_of(post(watched, APEX_BODY, {"Authorization": f"Bearer {key}"}), 401, "invalid_signature")
    assert "webhook-signature" in error["message"]


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-signature": "v1"},
        {"webhook-signature": "v1,not base64!"},
        {"webhook-signature": "v1,a,b"},
        {"webhook-timestamp": "soon"},
        {"webhook-timestamp": "1.5e9"},
        {"webhook-id": "x" * 256},
        {"webhook-id": ""},
    ],
)
def test_malformed_signature_headers_are_401_not_500(watched, signed_key, change):
    key, secret = signed_key
    error_of(post(watched, APEX_BODY, {**headers(key, secret, APEX_BODY), **change}), 401, "invalid_signature")


def test_a_body_that_is_not_utf8_is_401(watched, signed_key):
    key, secret = signed_key
    body = b'{"workflow": "single_send", "records": [{"ToAddress": "\xff@example.com"}]}'
    error_of(post(watched, body, headers(key, secret, body)), 401, "invalid_signature")


def test_a_repeated_webhook_id_gets_the_first_answer_and_logs_once(client, leads, signed_key, store):
    key, secret = signed_key
    first = post(client, APEX_BODY, headers(key, secret, APEX_BODY, webhook_id="msg_retry"))
    assert first.status_code == 200
    assert rows(store, "blocked_sends") == 1
    # A retry is signed again when sent (new timestamp), with the same id.
    again = post(client, APEX_BODY, headers(key, secret, APEX_BODY, webhook_id="msg_retry",
                                            timestamp=int(time.time()) + 30))
    assert again.status_code == first.status_code
    assert again.get_data() == first.get_data()
    assert again.get_json()["check_id"] == first.get_json()["check_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert rows(store, "blocked_sends") == 1
    assert rows(store, "webhook_deliveries") == 1
    # A new id is a new check.
    third = post(client, APEX_BODY, headers(key, secret, APEX_BODY, webhook_id="msg_next"))
    assert third.get_json()["check_id"] != first.get_json()["check_id"]
    assert rows(store, "blocked_sends") == 2


def test_a_webhook_id_reused_for_another_body_is_409(client, leads, signed_key, store):
    key, secret = signed_key
    assert post(client, APEX_BODY, headers(key, secret, APEX_BODY, webhook_id="msg_same")).status_code == 200
    other = APEX_BODY.replace(b"jane@example.com; ", b"")
    error_of(post(client, other, headers(key, secret, other, webhook_id="msg_same")), 409, "webhook_id_reused")
    assert rows(store, "blocked_sends") == 1


def test_the_same_webhook_id_from_another_key_is_its_own_delivery(client, leads, signed_key, store):
    key, secret = signed_key
    other = store.keys.create("sf-sandbox", "caller", sources=("salesforce",), require_signature=True)
    first = post(client, APEX_BODY, headers(key, secret, APEX_BODY, webhook_id="msg_x"))
    second = post(client, APEX_BODY, headers(other.key, other.signing_secret, APEX_BODY, webhook_id="msg_x"))
    assert first.get_json()["check_id"] != second.get_json()["check_id"]
    assert rows(store, "blocked_sends") == 2


def test_a_signed_request_of_the_wrong_shape_is_422_and_keeps_no_delivery(client, leads, signed_key, store):
    key, secret = signed_key
    bad = b'{"workflow": "single_send", "records": []}'
    error_of(post(client, bad, headers(key, secret, bad, webhook_id="msg_bad")), 422, "invalid_request")
    assert rows(store, "webhook_deliveries") == 0


def test_a_delivery_in_progress_is_409_with_retry_after(client, leads, signed_key, store, gate):
    """Two concurrent deliveries of one id: the second finds the first's claim and does not run the check."""
    key, secret = signed_key
    started, release = threading.Event(), threading.Event()
    checks = gate.extensions["gate"].checks
    real_run, runs = checks.run, []

    def slow_run(*args, **kwargs):
        runs.append(1)
        started.set()
        assert release.wait(10)
        return real_run(*args, **kwargs)

    checks.run = slow_run
    first = {}
    hdrs = headers(key, secret, APEX_BODY, webhook_id="msg_slow")
    thread = threading.Thread(target=lambda: first.update(response=post(gate.test_client(), APEX_BODY, hdrs)))
    thread.start()
    try:
        assert started.wait(10)
        second = post(client, APEX_BODY, hdrs)
        error_of(second, 409, "delivery_in_progress")
        assert second.headers["Retry-After"] == "1"
    finally:
        release.set()
        thread.join(10)
    assert first["response"].status_code == 200
    third = post(client, APEX_BODY, hdrs)
    assert third.get_json()["check_id"] == first["response"].get_json()["check_id"]
    assert len(runs) == 1
    assert rows(store, "blocked_sends") == 1


def test_simultaneous_deliveries_of_one_id_run_the_check_once(gate, leads, signed_key, store):
    key, secret = signed_key
    checks = gate.extensions["gate"].checks
    real_run, runs = checks.run, []

    def counted_run(*args, **kwargs):
        runs.append(1)
        time.sleep(0.2)  # keep the first claim in progress while the others arrive
        return real_run(*args, **kwargs)

    checks.run = counted_run
    hdrs = headers(key, secret, APEX_BODY, webhook_id="msg_race")
    barrier, responses = threading.Barrier(6), []

    def deliver():
        client = gate.test_client()
        barrier.wait(10)
        responses.append(post(client, APEX_BODY, hdrs))

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(runs) == 1
    assert sorted({r.status_code for r in responses}) in ([200], [200, 409])
    assert len({r.get_json()["check_id"] for r in responses if r.status_code == 200}) == 1
    assert all(r.get_json()["error"]["code"] == "delivery_in_progress" for r in responses if r.status_code == 409)
    assert rows(store, "blocked_sends") == 1


def test_a_claim_abandoned_by_a_dead_process_is_taken_over(client, leads, signed_key, store):
    key, secret = signed_key
    (stored,) = store.keys.all()
    request_hash = hashlib.sha256(PATH.encode() + b"\n" + APEX_BODY).hexdigest()
    claim = store.deliveries.claim(stored.id, "msg_dead", request_hash, stale_after=timedelta(seconds=60))
    assert claim.state == "claimed"
    hdrs = headers(key, secret, APEX_BODY, webhook_id="msg_dead")
    error_of(post(client, APEX_BODY, hdrs), 409, "delivery_in_progress")
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE webhook_deliveries SET created_at = :then"),
                           {"then": utcnow() - timedelta(minutes=2)})
    response = post(client, APEX_BODY, hdrs)
    assert response.status_code == 200
    assert rows(store, "blocked_sends") == 1
    assert post(client, APEX_BODY, hdrs).get_json()["check_id"] == response.get_json()["check_id"]


def test_keys_without_signatures_are_unaffected(client, leads, store):
    new = store.keys.create("sf-legacy", "caller", sources=("salesforce",))
    junk = {"Authorization": f"Bearer {new.key}", "webhook-id": "msg_1", "webhook-timestamp": "0",
            "webhook-signature": "v1,garbage"}
    first = post(client, APEX_BODY, junk)
    second = post(client, APEX_BODY, junk)
    assert first.status_code == second.status_code == 200
    assert first.get_json()["check_id"] != second.get_json()["check_id"]  # no idempotency without signatures
    assert rows(store, "webhook_deliveries") == 0


def test_a_signed_key_is_still_limited_to_its_sources(watched, signed_key):
    key, secret = signed_key
    check = {"workflow": "single_send", "messages": [{"recipients": [{"email": "jane@example.com"}]}]}
    body = json.dumps(check).encode()
    error_of(post(watched, body, headers(key, secret, body), path="/v1/checks"), 403, "forbidden")


def test_the_worker_drops_deliveries_older_than_the_retention(gate, leads, signed_key, store):
    from gateway.store import DELIVERY_RETENTION
    from gateway.worker import prune_deliveries

    key, secret = signed_key
    client = gate.test_client()
    for webhook_id in ("msg_old", "msg_new"):
        assert post(client, APEX_BODY, headers(key, secret, APEX_BODY, webhook_id=webhook_id)).status_code == 200
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE webhook_deliveries SET created_at = :then WHERE webhook_id = 'msg_old'"),
                           {"then": utcnow() - DELIVERY_RETENTION - timedelta(minutes=1)})
    prune_deliveries(gate.extensions["gate"])
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT webhook_id FROM webhook_deliveries")).scalars().all() == ["msg_new"]
