"""The console's storage on the real database: admin accounts and their lockout, the audit of settings changes,
the blocked-send log's filters and its counts per day; and the settings change path both the console and the
admin API take."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from gateway.store import LOCKOUT, MAX_FAILED_SIGN_INS, AdminExists, BlockedSendEntry, BlockedSendFilter, Change, utcnow
from tests.conftest import ADMIN


def entry(recipient, *, sender="rep@acme.example", source="web", workflow="single_send", reason="unsubscribed"):
    return BlockedSendEntry(check_id="chk_1", source=source, workflow=workflow, sender=sender, recipient=recipient,
                            reason_code=reason, message_id=None)


def test_an_admin_name_is_taken_once(store):
    store.admins.create("ana", "hash-1")
    with pytest.raises(AdminExists):
        store.admins.create("ana", "hash-2")
    assert [admin.name for admin in store.admins.all()] == ["ana"]


def test_the_fifth_failure_in_a_row_locks_the_account_for_fifteen_minutes(store):
    admin = store.admins.create("ana", "hash")
    for attempt in range(1, MAX_FAILED_SIGN_INS):
        admin = store.admins.record_failure(admin.id)
        assert admin.failed_attempts == attempt and not admin.locked_at(utcnow())
    before = utcnow()
    admin = store.admins.record_failure(admin.id)
    assert admin.locked_at(utcnow()) and admin.failed_attempts == 0
    assert before + LOCKOUT <= admin.locked_until <= utcnow() + LOCKOUT
    assert not admin.locked_at(admin.locked_until + timedelta(seconds=1))


def test_a_sign_in_clears_the_count_and_a_new_password_lifts_a_lock(store):
    admin = store.admins.create("ana", "hash")
    store.admins.record_failure(admin.id)
    store.admins.record_sign_in(admin.id)
    assert store.admins.by_id(admin.id).failed_attempts == 0 and store.admins.by_id(admin.id).last_sign_in_at
    for _ in range(MAX_FAILED_SIGN_INS):
        store.admins.record_failure(admin.id)
    assert store.admins.by_name("ana").locked_at(utcnow())
    assert store.admins.set_password("ana", "new-hash")
    assert store.admins.by_name("ana") .locked_until is None and store.admins.by_name("ana").password_hash == "new-hash"


def test_audit_rows_come_back_newest_first_and_paged(store):
    for n in range(3):
        store.audit.record([Change("failure_mode", f"old{n}", f"new{n}")], actor="ana", via="console")
    first = store.audit.page(limit=2)
    assert [row.new_value for row in first] == ["new2", "new1"]
    assert [row.new_value for row in store.audit.page(limit=2, before_id=first[-1].id)] == ["new0"]


def test_filters_narrow_the_log_and_take_like_characters_literally(store):
    day = datetime(2026, 3, 2, 12, tzinfo=timezone.utc)
    store.blocked_sends.log([entry("jane@example.com"), entry("bob_x@example.com", sender="other@acme.example")],
                            at=day)
    store.blocked_sends.log([entry("jane@other.example", source="outlook", workflow="plugin_send",
                                   reason="unverified")], at=day + timedelta(days=2))

    def recipients(**filters):
        return sorted(row.recipient for row in store.blocked_sends.page(limit=10, where=BlockedSendFilter(**filters)))

    assert recipients(recipient="JANE") == ["jane@example.com", "jane@other.example"]
    assert recipients(recipient="b_x") == ["bob_x@example.com"]
    assert recipients(recipient="%") == [] and recipients(recipient="a_e") == []  # as LIKE, a_e would match jane
    assert recipients(sender="other@") == ["bob_x@example.com"]
    assert recipients(source="outlook") == recipients(workflow="plugin_send") == ["jane@other.example"]
    assert recipients(since=date(2026, 3, 3)) == ["jane@other.example"]
    assert recipients(until=date(2026, 3, 2)) == ["bob_x@example.com", "jane@example.com"]
    assert recipients(since=date(2026, 3, 2), until=date(2026, 3, 2), recipient="jane") == ["jane@example.com"]
    every = list(store.blocked_sends.iterate(chunk=1, where=BlockedSendFilter(recipient="jane")))
    assert [row.recipient for row in every] == ["jane@other.example", "jane@example.com"]


def test_counts_per_day_by_reason(store):
    day = datetime(2026, 3, 2, 23, 59, tzinfo=timezone.utc)
    store.blocked_sends.log([entry("a@example.com"), entry("b@example.com"), entry("c@example.com", reason="unverified")],
                            at=day)
    store.blocked_sends.log([entry("d@example.com")], at=day + timedelta(minutes=2))
    store.blocked_sends.log([entry("e@example.com")], at=day - timedelta(days=5))
    assert store.blocked_sends.per_day_by_reason(date(2026, 3, 1)) == {
        date(2026, 3, 2): {"unsubscribed": 2, "unverified": 1},
        date(2026, 3, 3): {"unsubscribed": 1},
    }
    assert store.blocked_sends.per_day_by_reason(date(2026, 3, 1), where=BlockedSendFilter(recipient="d@")) == {
        date(2026, 3, 3): {"unsubscribed": 1}}


def test_a_patch_through_the_admin_api_is_audited_with_the_key_name(make_gate, simulator, store):
    client = make_gate(simulator).test_client()
    assert client.patch("/v1/admin/settings", json={"marketo_check_enabled": True}, headers=ADMIN).status_code == 200
    assert client.patch("/v1/admin/settings", json={"failure_mode": "allow"}, headers=ADMIN).status_code == 200
    assert client.patch("/v1/admin/settings", json={"failure_mode": "allow"}, headers=ADMIN).status_code == 200
    changes = [(c.actor, c.via, c.setting, c.old_value, c.new_value) for c in store.audit.page(limit=10)]
    assert changes == [
        ("test-admin", "api", "failure_mode", "deny (GATEWAY_FAILURE_MODE)", "allow"),
        ("test-admin", "api", "marketo_check_enabled", "off", "on"),
    ]  # writing the value a setting already has is no change


def test_a_refused_switch_changes_nothing_and_audits_nothing(make_gate, simulator, store):
    client = make_gate(simulator, marketo_client_secret="wrong").test_client()
    refused = client.patch("/v1/admin/settings", json={"marketo_check_enabled": True}, headers=ADMIN)
    assert refused.status_code == 409
    assert store.settings.get().marketo_check_enabled is False and store.audit.page(limit=10) == []


def test_the_api_filters_blocked_sends_and_exports_them(make_gate, store):
    store.blocked_sends.log([entry("jane@example.com"), entry("bob@example.com", source="gmail")])
    client = make_gate().test_client()
    page = client.get("/v1/admin/blocked-sends?recipient=jane", headers=ADMIN).get_json()
    assert [item["recipient"] for item in page["items"]] == ["jane@example.com"]
    csv_text = client.get("/v1/admin/blocked-sends?format=csv&source=gmail", headers=ADMIN).get_data(as_text=True)
    assert "bob@example.com" in csv_text and "jane@example.com" not in csv_text
    bad = client.get("/v1/admin/blocked-sends?since=yesterday", headers=ADMIN)
    assert bad.status_code in (400, 422) and bad.get_json()["error"]
