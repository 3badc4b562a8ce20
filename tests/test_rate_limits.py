"""Rate limits per caller key: answers up to the limit, then 429 with Retry-After and nothing checked or logged;
one count per key; one count across processes when they share Redis."""
from __future__ import annotations

import os
import uuid

import pytest

from gateway.config import DEFAULT_RATE_LIMIT, ApiKeySpec, ConfigError, load_config
from tests.conftest import ADMIN, ADMIN_KEY, CALLER, CALLER_KEY, IN_CI

TEST_REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
OTHER_KEY = "test-other-caller-key"
OTHER = {"Authorization": f"Bearer {OTHER_KEY}"}
KEYS = (
    ApiKeySpec("test-caller", "caller", CALLER_KEY),
    ApiKeySpec("test-admin", "admin", ADMIN_KEY),
    ApiKeySpec("other-caller", "caller", OTHER_KEY),
)
BODY = {"client": "outlook", "sender": "rep@acme.example", "to": ["jane@example.com"], "subject": "Hello"}


@pytest.fixture
def unsubscribed(simulator):
    simulator.state.add_lead("jane@example.com", unsubscribed=True)
    return simulator


def check(client, headers=CALLER):
    return client.post("/v1/hooks/email-client", json=BODY, headers=headers)


def assert_rate_limited(response):
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["code"] == "rate_limited" and "try again in" in error["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    return error


def test_over_the_limit_is_429_with_retry_after_and_nothing_logged(make_gate, unsubscribed, store):
    client = make_gate(unsubscribed, enabled=True, rate_limit="3 per minute").test_client()
    for _ in range(3):
        response = check(client)
        assert response.status_code == 200 and response.get_json()["decision"] == "deny"
    calls_before = unsubscribed.state.stats()["rest_calls"]

    error = assert_rate_limited(check(client))
    assert "3 per 1 minute" in error["message"]
    assert len(store.blocked_sends.page(limit=10)) == 3  # no 4th entry: the check never ran
    assert unsubscribed.state.stats()["rest_calls"] == calls_before


def test_each_key_has_its_own_count(make_gate, unsubscribed):
    client = make_gate(unsubscribed, enabled=True, rate_limit="2 per minute", api_keys=KEYS).test_client()
    assert [check(client).status_code for _ in range(2)] == [200, 200]
    assert_rate_limited(check(client))
    assert [check(client, OTHER).status_code for _ in range(2)] == [200, 200]
    assert_rate_limited(check(client, OTHER))


def test_one_count_per_key_across_endpoints(make_gate, unsubscribed):
    client = make_gate(unsubscribed, enabled=True, rate_limit="2 per minute").test_client()
    assert client.get("/v1/admin/settings", headers=ADMIN).status_code == 200
    body = {"workflow": "single_send", "messages": [{"recipients": [{"email": "bob@example.com"}]}]}
    assert client.post("/v1/checks", json=body, headers=ADMIN).status_code == 200
    assert_rate_limited(client.get("/v1/admin/blocked-sends", headers=ADMIN))
    assert check(client).status_code == 200  # the caller key is counted apart


def test_requests_without_a_known_key_count_against_their_address(make_gate, unsubscribed, store):
    client = make_gate(unsubscribed, enabled=True, rate_limit="2 per minute").test_client()
    assert check(client, {}).status_code == 401
    assert check(client, {"Authorization": "Bearer guessed"}).status_code == 401
    assert_rate_limited(check(client, {"Authorization": "Bearer another-guess"}))
    assert check(client).status_code == 200  # a known key from the same address has its own count

    other = client.post("/v1/hooks/email-client", json=BODY, environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 401  # another address, another count


def test_behind_a_trusted_proxy_the_forwarded_address_is_counted(make_gate, unsubscribed):
    client = make_gate(unsubscribed, enabled=True, rate_limit="1 per minute", trust_proxy_hops=1).test_client()
    first = {"X-Forwarded-For": "198.51.100.1"}
    assert check(client, first).status_code == 401
    assert_rate_limited(check(client, first))
    assert check(client, {"X-Forwarded-For": "198.51.100.2"}).status_code == 401


def test_preflight_and_health_are_not_counted(make_gate, unsubscribed):
    client = make_gate(unsubscribed, enabled=True, rate_limit="1 per minute").test_client()
    for _ in range(3):
        assert client.options("/v1/hooks/email-client").status_code == 200
        assert client.get("/healthz").status_code == 200
    assert check(client).status_code == 200
    assert_rate_limited(check(client))


def test_rate_limit_can_be_turned_off(make_gate, unsubscribed):
    client = make_gate(unsubscribed, enabled=True, rate_limit=None).test_client()
    assert all(client.get("/v1/admin/settings", headers=ADMIN).status_code == 200 for _ in range(20))


def test_rate_limit_configuration():
    base = {"SECRET_KEY": "x"}
    assert load_config(base).rate_limit == DEFAULT_RATE_LIMIT == "600 per minute"
    assert load_config({**base, "GATEWAY_RATE_LIMIT": "10/second;600/minute"}).rate_limit == "10/second;600/minute"
    assert load_config({**base, "GATEWAY_RATE_LIMIT": "off"}).rate_limit is None
    assert load_config(base).redis_url is None
    assert load_config({**base, "REDIS_URL": TEST_REDIS_URL}).redis_url == TEST_REDIS_URL
    with pytest.raises(ConfigError, match="GATEWAY_RATE_LIMIT"):
        load_config({**base, "GATEWAY_RATE_LIMIT": "lots"})


# --- Redis: the count shared by processes -----------------------------------------------------------------


@pytest.fixture
def redis_prefix():
    """A key prefix of this test's own in the test database; its keys are deleted afterwards."""
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        reason = f"no Redis at {TEST_REDIS_URL}: {error}"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    prefix = f"gate-test-{uuid.uuid4().hex}"
    yield prefix
    keys = list(client.scan_iter(match=f"*{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_processes_sharing_redis_share_one_count(make_gate, unsubscribed, store, redis_prefix):
    # Two create_app calls stand in for two gunicorn workers or dynos.
    settings = dict(rate_limit="3 per minute", redis_url=TEST_REDIS_URL, rate_limit_key_prefix=redis_prefix)
    one = make_gate(unsubscribed, enabled=True, **settings).test_client()
    two = make_gate(unsubscribed, enabled=True, **settings).test_client()
    assert check(one).status_code == 200
    assert check(two).status_code == 200
    assert check(one).status_code == 200
    assert_rate_limited(check(two))
    assert_rate_limited(check(one))
    assert len(store.blocked_sends.page(limit=10)) == 3


def test_without_redis_each_process_counts_alone(make_gate, unsubscribed):
    one = make_gate(unsubscribed, enabled=True, rate_limit="1 per minute").test_client()
    two = make_gate(unsubscribed, enabled=True, rate_limit="1 per minute").test_client()
    assert check(one).status_code == 200
    assert check(two).status_code == 200
    assert_rate_limited(check(one))


def test_redis_down_falls_back_to_counting_in_the_process(make_gate, unsubscribed):
    """A rate-limit store that cannot be reached must not stop checks: each process then counts alone."""
    client = make_gate(unsubscribed, enabled=True, rate_limit="2 per minute",
                       redis_url="redis://127.0.0.1:1/0").test_client()
    assert [check(client).status_code for _ in range(2)] == [200, 200]
    assert_rate_limited(check(client))
