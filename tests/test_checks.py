"""The resolution chain (`CheckService`) directly: setting, mirror, cache, live Marketo over HTTP, failure policy."""
from __future__ import annotations

import time

import pytest

from gateway import build_marketo
from gateway.budget import CallBudget
from gateway.cache import TTLCache
from gateway.checks import CheckService
from gateway.connection import CONNECTED_MESSAGE
from gateway.decisions import CheckRequest, Message, Recipient, Verdict
from gateway.domain import Decision
from gateway.marketo.interfaces import UnconfiguredMarketo
from gateway.store import utcnow
from tests.conftest import FakeClock, gate_config, marketo_settings

JANE, BOB, NEW = "jane@example.com", "bob@example.com", "new@example.com"


@pytest.fixture
def cache_clock():
    return FakeClock()


@pytest.fixture
def make_service(store, cache_clock):
    """A CheckService on the test database; with a simulator it asks Marketo over real HTTP, without none."""

    def make(simulator=None, *, enabled=True, **overrides) -> CheckService:
        config = gate_config(store.engine, **({**marketo_settings(simulator), **overrides} if simulator else overrides))
        marketo = build_marketo(config, CallBudget(store, config.marketo_daily_budget))
        if enabled:
            store.settings.update({"marketo_check_enabled": True}, updated_by="test")
        return CheckService(store, marketo, TTLCache(config.cache_ttl, config.cache_max_entries, cache_clock), config)

    return make


@pytest.fixture
def marketo(simulator):
    simulator.state.add_lead(JANE, unsubscribed=True)
    simulator.state.add_lead(BOB)
    return simulator


def resolve(service: CheckService, addresses, deadline: float | None = None) -> dict[str, Verdict]:
    settings, sync = service.context()
    return service.resolve(list(addresses), settings, sync, time.monotonic() + 10 if deadline is None else deadline)


def rest_calls(simulator) -> int:
    return simulator.state.stats()["rest_calls"]


def mirror_holds(store, *unsubscribed: str) -> None:
    """A mirror whose full load finished just now, holding `unsubscribed`."""
    store.sync.acquire_lease("test-worker", 60)
    store.mirror.apply_changes("test-worker", unsubscribed=list(unsubscribed),
                               state={"load_status": "complete", "last_success_at": utcnow()})


def test_with_the_check_off_everyone_is_allowed_and_nobody_asked(make_service, marketo, store):
    mirror_holds(store, JANE)
    service = make_service(marketo, enabled=False)
    verdicts = resolve(service, [JANE, BOB])
    assert verdicts == dict.fromkeys([JANE, BOB], Verdict(Decision.ALLOW, "check_disabled", "setting"))
    assert rest_calls(marketo) == 0


def test_a_fresh_mirror_answers_without_calling_marketo(make_service, marketo, store):
    mirror_holds(store, JANE)
    service = make_service(marketo)
    assert resolve(service, [JANE, BOB, NEW]) == {
        JANE: Verdict(Decision.DENY, "unsubscribed", "mirror"),
        BOB: Verdict(Decision.ALLOW, "allowed", "mirror"),
        NEW: Verdict(Decision.ALLOW, "allowed", "mirror"),
    }
    assert rest_calls(marketo) == 0


def test_a_stale_mirror_is_passed_over_for_marketo(make_service, marketo, store):
    mirror_holds(store)  # loaded, but with nobody in it
    service = make_service(marketo, mirror_max_age=0)
    assert resolve(service, [JANE])[JANE] == Verdict(Decision.DENY, "unsubscribed", "live")
    assert rest_calls(marketo) > 0


def test_without_a_mirror_marketo_answers_live_then_the_cache_until_it_expires(make_service, marketo, cache_clock):
    service = make_service(marketo, cache_ttl=60)
    live = {
        JANE: Verdict(Decision.DENY, "unsubscribed", "live"),
        BOB: Verdict(Decision.ALLOW, "allowed", "live"),
        NEW: Verdict(Decision.ALLOW, "not_in_marketo", "live"),
    }
    assert resolve(service, [JANE, BOB, NEW]) == live
    calls = rest_calls(marketo)
    assert calls > 0
    cached = resolve(service, [JANE, BOB, NEW])
    assert cached == {address: Verdict(v.decision, v.reason_code, "cache") for address, v in live.items()}
    assert rest_calls(marketo) == calls
    cache_clock.now += 61
    assert resolve(service, [JANE, BOB, NEW]) == live
    assert rest_calls(marketo) > calls


def test_only_the_addresses_missing_from_the_cache_are_asked_for(make_service, marketo):
    service = make_service(marketo)
    resolve(service, [JANE])
    marketo.state.add_lead(NEW, unsubscribed=True)
    assert resolve(service, [JANE, NEW]) == {
        JANE: Verdict(Decision.DENY, "unsubscribed", "cache"),
        NEW: Verdict(Decision.DENY, "unsubscribed", "live"),
    }


@pytest.mark.parametrize("mode, decision", [("deny", Decision.DENY), ("allow", Decision.ALLOW)])
def test_without_marketo_configured_the_failure_policy_answers(make_service, mode, decision):
    service = make_service(failure_mode=mode)
    assert isinstance(service.marketo, UnconfiguredMarketo)
    assert resolve(service, [JANE, BOB]) == dict.fromkeys([JANE, BOB], Verdict(decision, "unverified", "policy"))


def test_the_admins_failure_mode_overrides_the_configured_one(make_service, store):
    service = make_service(failure_mode="deny")
    store.settings.update({"failure_mode": "allow"}, updated_by="admin")
    assert resolve(service, [JANE])[JANE] == Verdict(Decision.ALLOW, "unverified", "policy")


def test_past_the_deadline_marketo_is_not_asked(make_service, marketo):
    service = make_service(marketo)
    verdicts = resolve(service, [JANE], deadline=time.monotonic() - 1)
    assert verdicts == {JANE: Verdict(Decision.DENY, "unverified", "policy")}
    assert rest_calls(marketo) == 0


def test_a_lasting_marketo_failure_is_recorded_for_the_admin_and_its_end_too(make_service, marketo, store):
    service = make_service(marketo, marketo_client_secret="not-the-secret")
    assert resolve(service, [JANE])[JANE] == Verdict(Decision.DENY, "unverified", "policy")
    settings = store.settings.get()
    assert settings.marketo_connected is False
    assert settings.marketo_message.startswith("Marketo refused the client id and secret")

    healthy = make_service(marketo)
    assert resolve(healthy, [JANE])[JANE] == Verdict(Decision.DENY, "unsubscribed", "live")
    settings = store.settings.get()
    assert (settings.marketo_connected, settings.marketo_message) == (True, CONNECTED_MESSAGE)


def test_a_passing_marketo_failure_is_not_recorded(make_service, marketo, store):
    service = make_service(marketo, failure_mode="allow")
    marketo.state.inject_fault(http_status=503)  # until cleared: every retry fails until the deadline
    assert resolve(service, [JANE], deadline=time.monotonic() + 1.0)[JANE] == Verdict(Decision.ALLOW, "unverified", "policy")
    assert marketo.state.stats()["faults_served"] > 0  # Marketo was asked, and failed
    assert store.settings.get().marketo_connected is None


def test_run_decides_and_logs_what_it_blocked_under_one_check_id(make_service, marketo, store):
    service = make_service(marketo)
    request = CheckRequest("web", "group_send", "rep@acme.example", (
        Message("m1", (Recipient(JANE, JANE), Recipient(BOB, BOB, "cc"))),
    ))
    outcome = service.run(request)
    assert outcome.enabled is True and outcome.check_id.startswith("chk_")
    (result,) = outcome.results
    assert (result.decision, result.deliver_to, result.blocked) == (Decision.ALLOW, (BOB,), (JANE,))
    (logged,) = store.blocked_sends.page(limit=10)
    assert (logged.check_id, logged.recipient, logged.reason_code, logged.workflow, logged.sender, logged.message_id) \
        == (outcome.check_id, JANE, "unsubscribed", "group_send", "rep@acme.example", "m1")


def test_settings_are_reread_only_after_their_cache_time_or_when_forgotten(make_service, store):
    service = make_service(enabled=False, settings_cache_seconds=3600)
    assert service.context()[0].marketo_check_enabled is False
    store.settings.update({"marketo_check_enabled": True}, updated_by="elsewhere")
    assert service.context()[0].marketo_check_enabled is False  # another process's change: seen later
    service.forget_context()
    assert service.context()[0].marketo_check_enabled is True
