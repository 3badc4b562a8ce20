"""The hot path: the lean load and dump answer exactly as the schemas do, and the in-process mirror view answers
exactly as the database, sees another process's writes within one refresh, and stays small."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError
from sqlalchemy import event

from gateway.decisions import Verdict, decide
from gateway.domain import CheckedVia, Decision, ReasonCode
from gateway.mirror_view import MirrorView, HashSet
from schemas.common import CheckAnswerSchema, MessageResultSchema, dump_check_answer, dump_message_result
from schemas.email_client import EmailClientCalloutSchema
from tests.conftest import CALLER

ROOT = Path(__file__).resolve().parent.parent
MEMORY_BOUND = 32 * 1024 * 1024  # bytes per worker for a mirror of 1,000,000 addresses

# Payloads: mostly the shapes add-ins send, with every field sometimes wrong --------------------------------

addresses = st.sampled_from([
    "jane@example.com", "Jane Doe <JANE@Example.com>", "  bob@example.org ", "renée@bücher.example",
    "not an address", "", "a@b", "x@[127.0.0.1]", "<>", "two <a@example.com> <b@example.com>", "é" * 70 + "@x.org",
]) | st.text(max_size=30)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10)
recipient_items = addresses | st.fixed_dictionaries({"emailAddress": addresses}) | \
    st.fixed_dictionaries({"emailAddress": json_scalars, "displayName": st.text(max_size=5)}) | json_scalars
recipient_lists = st.lists(recipient_items, max_size=4) | json_scalars


def maybe(strategy):
    """A value for an optional key, or _ABSENT: the key left out."""
    return st.one_of(st.just(_ABSENT), strategy)


_ABSENT = object()
payload_fields = {
    "client": st.sampled_from(["outlook", "gmail", "salesforce", "Outlook"]) | json_scalars,
    "workflow": st.sampled_from(["plugin_send", "group_send", "direct_send", "nope"]) | json_scalars,
    "sender": addresses | json_scalars,
    "to": recipient_lists,
    "cc": recipient_lists,
    "bcc": recipient_lists,
    "subject": st.text(max_size=10) | json_scalars,
    "id": st.text(max_size=5) | st.just("m" * 256) | json_scalars,
    "extra": json_scalars,
}


@st.composite
def payloads(draw):
    body = {}
    for key, strategy in payload_fields.items():
        value = draw(maybe(strategy))
        if value is not _ABSENT:
            body[key] = value
    return body


def schema_load(schema, body):
    try:
        return schema.load(body)
    except ValidationError:
        return ValidationError


@settings(max_examples=300, deadline=None)
@given(payloads() | json_scalars | st.lists(st.integers(), max_size=2))
def test_the_lean_load_accepts_only_what_the_schema_accepts_and_reads_it_the_same(body):
    schema = EmailClientCalloutSchema()
    lean = schema.load_common(body)
    full = schema_load(schema, body)
    if lean is not None:
        assert full == lean  # never accepts what the schema rejects (the schema answers every error)


@pytest.mark.parametrize("body", [
    {"client": "outlook", "to": ["jane@example.com"]},
    {"client": "gmail", "to": ["Jane <jane@example.com>"], "cc": ["bob@example.org"], "subject": "Hi", "id": "m1"},
    {"client": "outlook", "to": [{"emailAddress": "jane@example.com", "displayName": "Jane"}],
     "sender": "rep@example.com", "workflow": "plugin_send", "itemType": "message"},
    {"client": "outlook", "bcc": ["not an address"]},  # invalid addresses are answered, not refused
])
def test_the_lean_load_takes_the_payloads_add_ins_send(body):
    schema = EmailClientCalloutSchema()
    lean = schema.load_common(body)
    assert lean is not None
    assert lean == schema.load(body)


verdict_choices = st.sampled_from([
    Verdict(Decision.ALLOW, ReasonCode.ALLOWED, CheckedVia.MIRROR),
    Verdict(Decision.DENY, ReasonCode.UNSUBSCRIBED, CheckedVia.MIRROR),
    Verdict(Decision.ALLOW, ReasonCode.NOT_IN_MARKETO, CheckedVia.LIVE),
    Verdict(Decision.DENY, ReasonCode.UNVERIFIED, CheckedVia.POLICY),
])


@settings(max_examples=300, deadline=None)
@given(payloads(), st.data())
def test_the_lean_dump_writes_what_the_schemas_write(body, data):
    request = schema_load(EmailClientCalloutSchema(), body)
    if request is ValidationError:
        return
    verdicts = {address: data.draw(verdict_choices) for address in request.addresses()}
    results = decide(request, verdicts)
    (result,) = results
    assert dump_message_result(result) == MessageResultSchema().dump(result)
    outcome = {"check_id": "chk_1", "enabled": True, "results": results}
    assert dump_check_answer("chk_1", True, results) == CheckAnswerSchema().dump(outcome)


def test_errors_are_the_schemas_own_through_the_api(make_gate, simulator):
    client = make_gate(simulator, enabled=True).test_client()
    answer = client.post("/v1/hooks/email-client", json={"client": "outlook", "to": [], "cc": None}, headers=CALLER)
    assert answer.status_code == 422
    with pytest.raises(ValidationError) as error:
        EmailClientCalloutSchema().load({"client": "outlook", "to": [], "cc": None})
    assert answer.get_json()["error"]["fields"] == error.value.messages


# The in-process mirror view -------------------------------------------------------------------------------

UNIVERSE = [f"person{i}@example.com" for i in range(12)] + ["renée@bücher.example", "x@xn--bcher-kva.example"]
WORKER = "test-worker"
emails = st.sets(st.sampled_from(UNIVERSE), max_size=5)
writes = st.lists(st.tuples(st.sampled_from(["change", "clear"]), emails, emails), min_size=1, max_size=6)


def hold_lease(store):
    assert store.sync.acquire_lease(WORKER, 60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes)
def test_the_view_answers_exactly_as_the_database(store, steps):
    store.reset_mirror()
    view = MirrorView(store.mirror, build_in_background=False)
    view.refresh()
    for kind, unsubscribed, subscribed in steps:
        hold_lease(store)
        if kind == "clear":
            store.mirror.clear()
        store.mirror.apply_changes(WORKER, unsubscribed=sorted(unsubscribed), subscribed=sorted(subscribed))
        view.refresh()
        in_database = store.mirror.unsubscribed_among(UNIVERSE)
        assert view.unsubscribed_among(UNIVERSE) == in_database
        # ... and the view alone already knows who is not there, so those are answered without the database.
        assert {address for address in UNIVERSE if address in view.hashes} == in_database


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def write_from_another_process(store, *, unsubscribed=(), subscribed=()):
    """What the worker does, from a separate Python process on the same database."""
    script = (
        "import sys, json; from gateway.store import Store; from gateway.store.db import make_engine\n"
        "store = Store(make_engine(sys.argv[1])); args = json.loads(sys.argv[2])\n"
        "assert store.sync.acquire_lease('other-process', 60)\n"
        "store.mirror.apply_changes('other-process', unsubscribed=args[0], subscribed=args[1])\n"
        "store.sync.release_lease('other-process')\n"
    )
    import json

    url = store.engine.url.render_as_string(hide_password=False)
    subprocess.run([sys.executable, "-c", script, url, json.dumps([list(unsubscribed), list(subscribed)])],
                   cwd=ROOT, check=True, timeout=60)


def test_the_view_sees_another_process_unsubscribe_and_resubscribe_within_one_refresh(store):
    clock = Clock()
    view = MirrorView(store.mirror, poll_seconds=1.0, clock=clock, build_in_background=False)
    view.refresh()
    jane = "jane@example.com"
    assert view.unsubscribed_among([jane]) == set()

    write_from_another_process(store, unsubscribed=[jane])
    clock.now += 1.0  # one refresh interval
    assert view.unsubscribed_among([jane]) == {jane}

    write_from_another_process(store, subscribed=[jane])
    clock.now += 1.0
    assert view.unsubscribed_among([jane]) == set()
    assert jane not in view.hashes  # the re-subscribe left the view: her next check touches no database


def test_a_reset_mirror_is_rebuilt_in_every_view(store):
    hold_lease(store)
    store.mirror.apply_changes(WORKER, unsubscribed=["jane@example.com"])
    view = MirrorView(store.mirror, build_in_background=False)
    view.refresh()
    store.reset_mirror()
    hold_lease(store)
    store.mirror.apply_changes(WORKER, unsubscribed=["bob@example.com"])
    view.refresh()
    assert {a for a in ["jane@example.com", "bob@example.com"] if a in view.hashes} == {"bob@example.com"}


def test_pruned_re_subscribes_are_kept_for_views_that_follow_and_a_view_left_behind_rebuilds(store):
    hold_lease(store)
    people = [f"p{n}@example.com" for n in range(6)]
    store.mirror.apply_changes(WORKER, unsubscribed=people)
    following, left_behind = (MirrorView(store.mirror, build_in_background=False) for _ in range(2))
    following.refresh(), left_behind.refresh()
    for n, person in enumerate(people[:5]):  # five re-subscribes, one change each
        store.mirror.apply_changes(WORKER, subscribed=[person])
        if n < 4:
            following.refresh()  # one view keeps up; the other was asleep all along

    assert store.mirror.prune_removals(keep=2) == 3
    followed = following.hashes
    for view in (following, left_behind):
        view.refresh()
        assert {person for person in people if person in view.hashes} == {people[5]}
    assert left_behind.version == following.version == store.mirror.version().version
    assert following.hashes is followed, "a view that kept up is not rebuilt"
    assert store.mirror.prune_removals(keep=2) == 0


def test_a_view_built_in_the_background_answers_from_the_database_meanwhile(store):
    hold_lease(store)
    store.mirror.apply_changes(WORKER, unsubscribed=["jane@example.com"])
    view = MirrorView(store.mirror, poll_seconds=0)
    assert view.unsubscribed_among(["jane@example.com", "bob@example.com"]) == {"jane@example.com"}


def test_an_allowed_check_from_a_built_view_touches_no_database(make_gate, store):
    hold_lease(store)
    from gateway.store import utcnow

    store.mirror.apply_changes(WORKER, unsubscribed=["jane@example.com"],
                               state={"load_status": "complete", "last_success_at": utcnow()})
    service = make_gate(enabled=True).extensions["gate"].checks
    settings_, sync = service.context()
    service.mirror_view.refresh()
    service.mirror_view.poll_seconds = 60  # inside one poll interval

    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(service.store.engine, "before_cursor_execute", listener)
    try:
        allowed = service.resolve(["bob@example.com"], settings_, sync, deadline=float("inf"))
        assert statements == []
        denied = service.resolve(["jane@example.com"], settings_, sync, deadline=float("inf"))
        assert len(statements) == 1  # an address in the view is confirmed by the database
    finally:
        event.remove(service.store.engine, "before_cursor_execute", listener)
    assert allowed["bob@example.com"].decision == Decision.ALLOW
    assert denied["jane@example.com"].decision == Decision.DENY


def test_a_view_of_a_million_addresses_stays_under_the_memory_bound():
    million = HashSet.of(f"person{i}@example{i % 977}.com" for i in range(1_000_000))
    assert len(million) == 1_000_000
    assert million.memory_bytes() <= MEMORY_BOUND
    million.add(f"late{i}@example.com" for i in range(20_000))  # recent changes, not merged yet
    million.remove(f"person{i}@example{i % 977}.com" for i in range(0, 20_000, 2))
    assert len(million) == 1_010_000
    assert million.memory_bytes() <= MEMORY_BOUND


def test_a_failed_poll_leaves_the_view_answering(store, monkeypatch, caplog):
    from sqlalchemy.exc import OperationalError

    hold_lease(store)
    store.mirror.apply_changes(WORKER, unsubscribed=["jane@example.com"])
    clock = Clock()
    view = MirrorView(store.mirror, poll_seconds=1.0, clock=clock, build_in_background=False)
    view.refresh()

    def unreachable():
        raise OperationalError("SELECT mirror_version", {}, Exception("connection refused"))

    monkeypatch.setattr(store.mirror, "version", unreachable)
    clock.now += 1.0
    assert view.unsubscribed_among(["bob@example.com"]) == set()  # from the view alone: no database needed
    assert "could not read the mirror's changes" in caplog.text


def test_remembered_addresses_are_bounded_and_huge_inputs_never_kept():
    from schemas.common import MAX_ADDRESS_INPUT, NORMALIZED_CACHE_SIZE, _remembered_address, normalize_address

    assert _remembered_address.cache_info().maxsize == NORMALIZED_CACHE_SIZE
    before = _remembered_address.cache_info().currsize
    assert normalize_address(" " * MAX_ADDRESS_INPUT + "jane@example.com") == "jane@example.com"  # trimmed first
    assert _remembered_address.cache_info().currsize == before
    assert normalize_address("Jane <JANE@example.com>") == "jane@example.com"
    assert normalize_address("Jane <JANE@example.com>") == "jane@example.com"  # the second time, remembered
    assert _remembered_address.cache_info().hits >= 1
