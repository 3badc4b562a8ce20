"""Each repository of the store, directly, on the real test database (SQLite, or PostgreSQL when configured)."""
from __future__ import annotations

import dataclasses
from datetime import date, timedelta, timezone

import pytest

from gateway.store import (
    IN_CHUNK,
    BlockedSendEntry,
    CallCounts,
    Change,
    LeaseLost,
    LoggedBlockedSend,
    Settings,
    StoredKey,
    SyncStatus,
    hash_key,
    utcnow,
)
from tests.conftest import mirror_emails, restore_rows, rows_of_every_table

# settings ---------------------------------------------------------------------------------------------


def test_settings_start_as_the_migration_seeded_them(store):
    settings = store.settings.get()
    assert isinstance(settings, Settings)
    assert settings.marketo_check_enabled is False
    assert (settings.failure_mode, settings.marketo_connected, settings.updated_by) == (None, None, None)


def test_settings_update_returns_the_new_settings_with_who_and_when(store):
    before = utcnow()
    settings = store.settings.update({"marketo_check_enabled": True, "failure_mode": "allow"}, updated_by="ana")
    assert (settings.marketo_check_enabled, settings.failure_mode, settings.updated_by) == (True, "allow", "ana")
    assert settings.updated_at.tzinfo is not None and settings.updated_at >= before - timedelta(seconds=1)
    assert store.settings.get() == settings
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.failure_mode = "deny"


def test_settings_record_the_marketo_connection_test(store):
    store.settings.record_marketo_status(False, "Marketo refused the client id and secret")
    settings = store.settings.get()
    assert settings.marketo_connected is False
    assert settings.marketo_message == "Marketo refused the client id and secret"
    assert settings.marketo_checked_at is not None and settings.updated_by is None  # not an admin's change


def test_settings_and_sync_status_read_in_one_shared_session(store):
    store.settings.update({"marketo_check_enabled": True}, updated_by="ana")
    with store.session() as session:
        settings = store.settings.get(session=session)
        sync = store.sync.status(session=session)
    assert settings.marketo_check_enabled is True
    assert isinstance(sync, SyncStatus) and sync.load_status == "not_started"


# keys -------------------------------------------------------------------------------------------------


def test_a_created_key_is_found_by_its_hash_only(store):
    new = store.keys.create("web-app", "caller", sources=("web", "web"))
    assert new.key.startswith("gk_") and new.signing_secret is None
    stored = store.keys.by_hash(hash_key(new.key))
    assert isinstance(stored, StoredKey)
    assert (stored.name, stored.role, stored.sources, stored.require_signature) == ("web-app", "caller", ("web",), False)
    assert store.keys.by_hash(new.key) is None  # the key itself is not what is stored


def test_a_signed_key_gets_a_standard_webhooks_secret(store):
    new = store.keys.create("sf-prod", "caller", sources=("salesforce",), require_signature=True)
    assert new.signing_secret.startswith("whsec_")
    (stored,) = store.keys.all()
    assert stored.require_signature is True and stored.signing_secret == new.signing_secret
    assert new.signing_secret not in repr(stored)


def test_unknown_sources_are_refused_and_nothing_is_stored(store):
    with pytest.raises(ValueError, match="unknown sources"):
        store.keys.create("odd", "caller", sources=("fax",))
    assert store.keys.all() == []


def test_touch_records_the_last_use(store):
    new = store.keys.create("web-app", "caller")
    key_id = store.keys.by_hash(hash_key(new.key)).id
    assert store.keys.all()[0].last_used_at is None
    store.keys.touch(key_id)
    assert store.keys.all()[0].last_used_at is not None


def test_a_revoked_key_is_listed_but_no_longer_found(store):
    new = store.keys.create("old", "admin")
    store.keys.create("new", "admin")
    assert store.keys.revoke("old") is True
    assert store.keys.revoke("old") is False  # revoked already
    assert store.keys.revoke("never-made") is False
    assert store.keys.by_hash(hash_key(new.key)) is None
    listed = {key.name: key for key in store.keys.all()}
    assert list(listed) == ["new", "old"]
    assert listed["old"].revoked_at is not None and listed["new"].revoked_at is None


# blocked sends ----------------------------------------------------------------------------------------


def entry(recipient: str, check_id: str = "chk_1", **changes) -> BlockedSendEntry:
    fields = dict(check_id=check_id, source="web", workflow="single_send", sender="rep@acme.example",
                  recipient=recipient, reason_code="unsubscribed", message_id="m1")
    return BlockedSendEntry(**{**fields, **changes})


def test_logged_blocked_sends_read_back_newest_first_as_plain_records(store):
    store.blocked_sends.log([entry("a@example.com"), entry("b@example.com")])
    store.blocked_sends.log([entry("c@example.com", "chk_2", message_id=None, sender=None)])
    rows = store.blocked_sends.page(limit=10)
    assert all(isinstance(row, LoggedBlockedSend) for row in rows)
    assert [row.recipient for row in rows] == ["c@example.com", "b@example.com", "a@example.com"]
    assert (rows[0].check_id, rows[0].sender, rows[0].message_id) == ("chk_2", None, None)
    assert rows[0].at.tzinfo is not None and rows[0].at.utcoffset() == timezone.utc.utcoffset(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rows[0].recipient = "someone@else.example"


def test_blocked_sends_keep_nul_characters_out_of_the_database(store):
    store.blocked_sends.log([entry("a@example.com", message_id="m\x001")])
    (row,) = store.blocked_sends.page(limit=10)
    assert row.message_id == "m\ufffd1"


def test_blocked_sends_page_by_cursor_and_iterate_over_every_row(store):
    store.blocked_sends.log([entry(f"p{n}@example.com") for n in range(7)])
    first = store.blocked_sends.page(limit=3)
    second = store.blocked_sends.page(limit=3, before_id=first[-1].id)
    assert [row.recipient for row in first + second] == [f"p{n}@example.com" for n in range(6, 0, -1)]
    everything = list(store.blocked_sends.iterate(chunk=2))
    assert [row.recipient for row in everything] == [f"p{n}@example.com" for n in range(6, -1, -1)]
    assert [row.recipient for row in store.blocked_sends.iterate(before_id=first[0].id, chunk=4)] == \
        [f"p{n}@example.com" for n in range(5, -1, -1)]


def test_an_empty_log_call_writes_nothing(store):
    store.blocked_sends.log([])
    assert store.blocked_sends.page(limit=10) == []


def test_writes_sharing_a_transaction_land_together_or_not_at_all(store):
    with pytest.raises(RuntimeError):
        with store.transaction() as session:
            store.blocked_sends.log([entry("a@example.com")], session=session)
            store.mirror.clear(session=session)
            raise RuntimeError("the second write of the check failed")
    assert store.blocked_sends.page(limit=10) == []
    with store.transaction() as session:
        store.blocked_sends.log([entry("a@example.com")], session=session)
        store.blocked_sends.log([entry("b@example.com", "chk_2")], session=session)
    assert len(store.blocked_sends.page(limit=10)) == 2


# mirror and sync state --------------------------------------------------------------------------------


def test_only_the_lease_holder_writes_the_mirror(store):
    assert store.sync.acquire_lease("worker-a", 60) is True
    assert store.sync.acquire_lease("worker-b", 60) is False
    with pytest.raises(LeaseLost):
        store.mirror.apply_changes("worker-b", unsubscribed=["jane@example.com"])
    with pytest.raises(LeaseLost):
        store.sync.update("worker-b", last_error="not mine to write")
    with pytest.raises(LeaseLost):
        store.sync.renew_lease("worker-b", 60)
    assert store.mirror.size() == 0
    assert store.sync.status().lease_owner == "worker-a" and store.sync.status().last_error is None


def test_a_released_or_expired_lease_can_be_taken(store):
    assert store.sync.acquire_lease("worker-a", 60) is True
    assert store.sync.acquire_lease("worker-a", 60) is True  # the holder renews by acquiring again
    store.sync.release_lease("worker-b")  # not the holder: no effect
    assert store.sync.status().lease_owner == "worker-a"
    store.sync.release_lease("worker-a")
    assert store.sync.acquire_lease("worker-b", -1) is True  # taken, and expired at once
    assert store.sync.acquire_lease("worker-c", 60) is True
    status = store.sync.status()
    assert status.lease_owner == "worker-c" and status.lease_until > utcnow()


def test_mirror_changes_and_the_sync_position_move_together(store):
    store.sync.acquire_lease("worker-a", 60)
    store.mirror.apply_changes("worker-a", unsubscribed=["jane@example.com", "jane@example.com", "bob@example.com"],
                               state={"changes_token": "t1"})
    store.mirror.apply_changes("worker-a", unsubscribed=["jane@example.com"], subscribed=["bob@example.com"],
                               state={"changes_token": "t2"})
    assert mirror_emails(store) == {"jane@example.com"}
    assert store.mirror.size() == 1
    assert store.sync.status().changes_token == "t2"
    assert store.mirror.unsubscribed_among(["bob@example.com", "jane@example.com", "new@example.com"]) == \
        {"jane@example.com"}


def test_mirror_reads_and_writes_more_addresses_than_one_query_may_bind(store):
    many = [f"person{n}@example.com" for n in range(IN_CHUNK * 2 + 5)]
    store.sync.acquire_lease("worker-a", 60)
    store.mirror.apply_changes("worker-a", unsubscribed=many)
    assert store.mirror.size() == len(many)
    assert store.mirror.unsubscribed_among(many + ["nobody@example.com"]) == set(many)
    store.mirror.apply_changes("worker-a", subscribed=many[1:])
    assert mirror_emails(store) == {many[0]}


def test_sync_update_writes_the_position_for_the_holder(store):
    store.sync.acquire_lease("worker-a", 60)
    moment = utcnow().replace(microsecond=0)
    store.sync.update("worker-a", load_status="loading", load_window_start=moment, load_export_id="job-1")
    status = store.sync.status()
    assert (status.load_status, status.load_window_start, status.load_export_id) == ("loading", moment, "job-1")


def test_reset_mirror_forgets_the_rows_and_the_sync_position(store):
    store.sync.acquire_lease("worker-a", 60)
    store.mirror.apply_changes("worker-a", unsubscribed=["jane@example.com"],
                               state={"load_status": "complete", "last_success_at": utcnow(), "changes_token": "t"})
    store.reset_mirror()
    assert store.mirror.size() == 0
    status = store.sync.status()
    assert (status.load_status, status.changes_token, status.last_success_at, status.lease_owner) == \
        ("not_started", None, None, None)


# Marketo call counts ----------------------------------------------------------------------------------


def test_calls_are_counted_per_day_and_kind(store):
    day, next_day = date(2026, 3, 1), date(2026, 3, 2)
    assert store.calls.counts(day) == CallCounts(day)
    assert store.calls.take(day, "token", None) and store.calls.take(day, "lookup", None)
    assert store.calls.take(day, "sync", None) and store.calls.take(day, "sync", None)
    assert store.calls.take(next_day, "lookup", None)
    assert store.calls.counts(day) == CallCounts(day, used=3, token=1, lookup=1, sync=2)  # tokens are free
    assert store.calls.counts(next_day) == CallCounts(next_day, used=1, lookup=1)


def test_a_call_past_its_kinds_cap_is_refused_and_not_counted(store):
    day = date(2026, 3, 1)
    assert store.calls.take(day, "lookup", 1) and store.calls.take(day, "sync", 2)
    assert store.calls.take(day, "lookup", 1) is False
    assert store.calls.take(day, "sync", 2) is True  # the lookups' calls do not eat the sync's share
    assert store.calls.take(day, "sync", 2) is False
    assert store.calls.take(day, "token", None) is True  # the identity call has no cap
    assert store.calls.counts(day) == CallCounts(day, used=3, token=1, lookup=1, sync=2)


def test_a_call_given_back_leaves_its_share_and_is_counted_apart(store):
    day = date(2026, 3, 1)
    assert store.calls.take(day, "lookup", 1)
    store.calls.give_back(day, "lookup")  # no answer, or a 5xx
    assert store.calls.take(day, "lookup", 1) is True  # the share is whole again
    store.calls.give_back(day, "token")
    assert store.calls.counts(day) == CallCounts(day, used=1, lookup=1, unanswered=2)


# webhook deliveries -----------------------------------------------------------------------------------


@pytest.fixture
def key_id(store):
    new = store.keys.create("sf-prod", "caller", sources=("salesforce",), require_signature=True)
    return store.keys.by_hash(hash_key(new.key)).id


STALE_AFTER = timedelta(minutes=5)


def test_a_delivery_is_claimed_once_then_answered_again_from_its_kept_answer(store, key_id):
    claim = store.deliveries.claim(key_id, "msg_1", "hash-a", stale_after=STALE_AFTER)
    assert claim.state == "claimed" and claim.id is not None
    assert store.deliveries.claim(key_id, "msg_1", "hash-a", stale_after=STALE_AFTER).state == "in_progress"
    assert store.deliveries.claim(key_id, "msg_1", "hash-b", stale_after=STALE_AFTER).state == "mismatch"
    store.deliveries.complete(claim.id, 200, '{"decision": "allow"}')
    again = store.deliveries.claim(key_id, "msg_1", "hash-a", stale_after=STALE_AFTER)
    assert (again.state, again.id, again.status, again.body) == ("done", claim.id, 200, '{"decision": "allow"}')


def test_a_released_delivery_runs_afresh(store, key_id):
    claim = store.deliveries.claim(key_id, "msg_1", "hash-a", stale_after=STALE_AFTER)
    store.deliveries.release(claim.id)
    assert store.deliveries.claim(key_id, "msg_1", "hash-a", stale_after=STALE_AFTER).state == "claimed"


def test_a_completed_delivery_cannot_be_released(store, key_id):
    claim = store.deliveries.claim(key_id, "msg_1", "hash-a", stale_after=STALE_AFTER)
    store.deliveries.complete(claim.id, 200, "{}")
    store.deliveries.release(claim.id)
    assert store.deliveries.claim(key_id, "msg_1", "hash-a", stale_after=STALE_AFTER).state == "done"


def test_a_stale_claim_is_taken_over_by_one_later_delivery(store, key_id):
    first = store.deliveries.claim(key_id, "msg_1", "hash-a", stale_after=STALE_AFTER)
    # Every claim is older than a negative age: the first delivery's process counts as dead.
    taken = store.deliveries.claim(key_id, "msg_1", "hash-a", stale_after=timedelta(seconds=-60))
    assert (taken.state, taken.id) == ("claimed", first.id)
    assert store.deliveries.claim(key_id, "msg_1", "hash-a", stale_after=STALE_AFTER).state == "in_progress"


def test_webhook_ids_are_per_key(store, key_id):
    other = store.keys.create("sf-sandbox", "caller", sources=("salesforce",), require_signature=True)
    other_id = store.keys.by_hash(hash_key(other.key)).id
    assert store.deliveries.claim(key_id, "msg_1", "hash-a", stale_after=STALE_AFTER).state == "claimed"
    assert store.deliveries.claim(other_id, "msg_1", "hash-b", stale_after=STALE_AFTER).state == "claimed"


def test_prune_drops_only_deliveries_older_than_the_cut(store, key_id):
    store.deliveries.claim(key_id, "msg_1", "hash-a", stale_after=STALE_AFTER)
    store.deliveries.claim(key_id, "msg_2", "hash-b", stale_after=STALE_AFTER)
    assert store.deliveries.prune(utcnow() - timedelta(days=1)) == 0
    assert store.deliveries.prune(utcnow() + timedelta(seconds=1)) == 2
    assert store.deliveries.claim(key_id, "msg_1", "hash-a", stale_after=STALE_AFTER).state == "claimed"


# isolation between tests ------------------------------------------------------------------------------


def test_cleaning_up_empties_every_table_down_to_the_rows_the_migrations_seeded(store, migrated, key_id):
    store.settings.update({"marketo_check_enabled": True}, updated_by="ana")
    store.blocked_sends.log([entry("a@example.com")])
    store.deliveries.claim(key_id, "msg_1", "hash-a", stale_after=STALE_AFTER)
    store.calls.take(date(2026, 3, 1), "lookup", None)
    store.sync.acquire_lease("worker-a", 60)
    store.mirror.apply_changes("worker-a", unsubscribed=["jane@example.com"], state={"load_status": "complete"})
    store.admins.create("ana", "scrypt:not-a-real-hash")
    store.audit.record([Change("failure_mode", "deny", "allow")], actor="ana", via="console")
    store.outbox.add_opt_outs(["jane@example.com"])
    store.mirror.apply_changes("worker-a", unsubscribed=["bob@example.com"])
    store.mirror.apply_changes("worker-a", subscribed=["bob@example.com"])  # a removal row, for the views
    store.circuit.trip(1000.0, 1060.0)
    assert all(rows_of_every_table(migrated.engine).values())  # every table of the models holds something now
    restore_rows(migrated.engine, migrated.seeded)
    assert rows_of_every_table(migrated.engine) == migrated.seeded
    assert {table.name for table, rows in migrated.seeded.items() if rows} == {"gate_settings", "sync_state", "salesforce_state",
                                                                                  "marketo_circuit"}
    assert store.settings.get().marketo_check_enabled is False
    assert not store.circuit.state().is_open
    assert store.sync.status().load_status == "not_started"
