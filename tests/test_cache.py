"""The in-process cache of live Marketo answers, on an injected clock: no waiting for entries to expire."""
from __future__ import annotations

import pytest

from gateway.cache import TTLCache
from tests.conftest import FakeClock


@pytest.fixture
def clock():
    return FakeClock()


def test_an_answer_is_served_until_its_time_to_live_runs_out(clock):
    cache = TTLCache(ttl=60, max_entries=10, clock=clock)
    cache.put_many({"jane@example.com": "unsubscribed"})
    clock.now += 59.9
    assert cache.get_many(["jane@example.com", "bob@example.com"]) == {"jane@example.com": "unsubscribed"}
    clock.now += 0.1  # exactly the time to live: expired
    assert cache.get_many(["jane@example.com"]) == {}


def test_an_expired_entry_is_forgotten_not_just_hidden(clock):
    cache = TTLCache(ttl=60, max_entries=10, clock=clock)
    cache.put_many({"jane@example.com": "unsubscribed"})
    clock.now += 61
    assert cache.get_many(["jane@example.com"]) == {}
    clock.now -= 61  # were it still held, an earlier clock would find it again
    assert cache.get_many(["jane@example.com"]) == {}


def test_putting_an_answer_again_renews_it(clock):
    cache = TTLCache(ttl=60, max_entries=10, clock=clock)
    cache.put_many({"jane@example.com": "allowed"})
    clock.now += 50
    cache.put_many({"jane@example.com": "unsubscribed"})
    clock.now += 50
    assert cache.get_many(["jane@example.com"]) == {"jane@example.com": "unsubscribed"}


def test_past_its_size_the_cache_drops_the_least_recently_put(clock):
    cache = TTLCache(ttl=60, max_entries=2, clock=clock)
    cache.put_many({"a@example.com": 1, "b@example.com": 2})
    cache.put_many({"a@example.com": 1})  # a is now the most recent
    cache.put_many({"c@example.com": 3})
    assert cache.get_many(["a@example.com", "b@example.com", "c@example.com"]) == {"a@example.com": 1, "c@example.com": 3}


def test_one_put_larger_than_the_cache_keeps_its_last_entries(clock):
    cache = TTLCache(ttl=60, max_entries=2, clock=clock)
    cache.put_many({f"p{n}@example.com": n for n in range(5)})
    assert cache.get_many([f"p{n}@example.com" for n in range(5)]) == {"p3@example.com": 3, "p4@example.com": 4}


def test_clear_forgets_everything(clock):
    cache = TTLCache(ttl=60, max_entries=10, clock=clock)
    cache.put_many({"a@example.com": 1, "b@example.com": 2})
    cache.clear()
    assert cache.get_many(["a@example.com", "b@example.com"]) == {}
