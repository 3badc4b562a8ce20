"""One identity per address: callers' spellings and Marketo's spellings of one mailbox are one key, in the
mirror (full load and change stream) and in live lookups against the simulator over HTTP."""
import unicodedata
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import column, select, table

from gateway.addresses import address_key, marketo_spellings
from gateway.store import as_utc
from gateway.store.db import make_engine, upgrade
from gateway.store.models import MirrorUnsubscribe
from schemas.common import normalize_address
from tests.conftest import CALLER
from tests.test_health import raw_database_url  # noqa: F401  (a fixture: an empty database)
from tests.test_mirror import syncer

NOW = datetime.now(timezone.utc)
NFC_RENEE = unicodedata.normalize("NFC", "renée@example.org")
NFD_RENEE = unicodedata.normalize("NFD", "renée@example.org")
# (how Marketo holds the person, how a rep writes them): each pair is one mailbox, in both directions.
SAME_PERSON = [
    ("user@xn--bcher-kva.example", "user@bücher.example"),
    ("user@bücher.example", "user@xn--bcher-kva.example"),
    (NFD_RENEE, NFC_RENEE),
    (NFC_RENEE, NFD_RENEE),
]
assert NFC_RENEE != NFD_RENEE


# the key -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spelling, key", [
    ("  Jane@Example.COM ", "jane@example.com"),
    ("user@xn--bcher-kva.example", "user@bücher.example"),
    ("User@XN--BCHER-KVA.EXAMPLE", "user@bücher.example"),
    ("user@BÜCHER.example", "user@bücher.example"),
    (NFD_RENEE, NFC_RENEE),
    ("René@EXAMPLE.org", unicodedata.normalize("NFC", "rené@example.org")),
    ("first.last+tag@example.com", "first.last+tag@example.com"),  # the local part is kept
    ("x@straße.de", "x@straße.de"),  # lowercased, not case-folded: Marketo holds strasse as someone else
    ("x@xn--strae-oqa.de", "x@straße.de"),
    ("a@xn--zz.example", "a@xn--zz.example"),  # an invalid A-label still matches itself
])
def test_every_spelling_of_a_mailbox_has_one_key(spelling, key):
    assert address_key(spelling) == key


@pytest.mark.parametrize("value", [None, 42, "", "   ", "no-at-sign", "@example.com", "user@"])
def test_what_is_not_an_address_has_no_key(value):
    assert address_key(value) is None


def test_marketo_is_asked_for_every_spelling_it_may_hold_the_key_first():
    key = address_key("RENÉE@XN--BCHER-KVA.EXAMPLE")
    spellings = marketo_spellings(key)
    assert spellings[0] == key
    assert set(spellings) == {
        unicodedata.normalize(form, local) + "@" + domain
        for form in ("NFC", "NFD") for local in ("renée",) for domain in ("bücher.example", "xn--bcher-kva.example")
    }
    assert marketo_spellings("jane@example.com") == ("jane@example.com",)


@settings(max_examples=300, derandomize=True, database=None)
@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_the_key_is_stable_and_every_spelling_of_it_maps_back_to_it(local, domain):
    key = address_key(f"{local}@{domain}")
    if key is None:
        return
    assert address_key(key) == key
    assert all(address_key(spelling) == key for spelling in marketo_spellings(key))


@pytest.mark.parametrize("held, written", SAME_PERSON)
def test_a_callers_address_gets_the_key_of_marketos_spelling(held, written):
    assert normalize_address(f"Some One <{written}>") == address_key(held) == address_key(written)


# the mirror: full load and change stream ------------------------------------------------------------------

def check(client, address):
    response = client.post("/v1/checks", headers=CALLER, json={
        "workflow": "single_send", "messages": [{"id": "m", "recipients": [{"email": address, "type": "to"}]}]})
    assert response.status_code == 200, response.get_json()
    recipient = response.get_json()["results"][0]["recipients"][0]
    return recipient["decision"], recipient["checked_via"]


@pytest.fixture
def mirrored_gate(make_gate, simulator):
    return make_gate(simulator, enabled=True, mirror_load_from=NOW - timedelta(days=30), export_poll_seconds=0.01)


@pytest.mark.parametrize("held, written", SAME_PERSON)
def test_the_full_load_denies_every_spelling_of_an_unsubscribed_person(mirrored_gate, simulator, held, written):
    simulator.state.add_lead(held, unsubscribed=True, created_at=NOW - timedelta(days=3))
    simulator.state.add_lead("someone.else@example.org", unsubscribed=False, created_at=NOW - timedelta(days=3))
    assert syncer(mirrored_gate).run_once().error is None
    client = mirrored_gate.test_client()
    calls = simulator.state.stats()["rest_calls"]
    assert check(client, written) == ("deny", "mirror")
    assert check(client, held) == ("deny", "mirror")
    assert check(client, "someone.else@example.org") == ("allow", "mirror")
    assert simulator.state.stats()["rest_calls"] == calls


@pytest.mark.parametrize("held, written", SAME_PERSON)
def test_the_change_stream_follows_every_spelling(mirrored_gate, simulator, held, written):
    simulator.state.add_lead(held, unsubscribed=False, created_at=NOW - timedelta(days=3))
    sync = syncer(mirrored_gate)
    assert sync.run_once().error is None
    client = mirrored_gate.test_client()
    assert check(client, written) == ("allow", "mirror")

    simulator.state.unsubscribe(held)
    assert sync.run_once().error is None
    assert check(client, written) == ("deny", "mirror")

    simulator.state.resubscribe(held)
    assert sync.run_once().error is None
    assert check(client, written) == ("allow", "mirror")


# live lookups -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("held, written", SAME_PERSON)
def test_a_live_lookup_asks_every_spelling_in_one_call(gate, simulator, held, written):
    simulator.state.add_lead(held, unsubscribed=True)
    client = gate.test_client()
    lookups = simulator.state.stats()["calls"].get("leads", 0)
    assert check(client, written) == ("deny", "live")
    assert simulator.state.stats()["calls"]["leads"] == lookups + 1


def test_a_person_held_in_two_spellings_is_denied_if_either_unsubscribed(gate, simulator):
    simulator.state.add_lead("user@bücher.example", unsubscribed=False)
    simulator.state.add_lead("USER@xn--bcher-kva.example", unsubscribed=True)
    assert check(gate.test_client(), "user@bücher.example") == ("deny", "live")


def test_a_person_marketo_holds_subscribed_in_every_spelling_is_allowed(gate, simulator):
    simulator.state.add_lead("user@xn--bcher-kva.example", unsubscribed=False)
    response = gate.test_client().post("/v1/checks", headers=CALLER, json={
        "workflow": "single_send", "messages": [{"id": "m", "recipients": [
            {"email": "user@bücher.example", "type": "to"}, {"email": "nobody@bücher.example", "type": "to"}]}]})
    reasons = [r["reason_code"] for r in response.get_json()["results"][0]["recipients"]]
    assert reasons == ["allowed", "not_in_marketo"]


# the migration ---------------------------------------------------------------------------------------------

def test_the_migration_rekeys_the_mirror_and_merges_spellings_of_one_person(raw_database_url):  # noqa: F811
    engine = make_engine(raw_database_url)
    try:
        upgrade(engine, "0003")
        earlier, later = NOW - timedelta(days=2), NOW - timedelta(days=1)
        with engine.begin() as connection:
            as_0003_left_it = table("mirror_unsubscribes", column("email"), column("changed_at"))
            connection.execute(as_0003_left_it.insert(), [
                {"email": "user@xn--bcher-kva.example", "changed_at": later},
                {"email": "user@bücher.example", "changed_at": earlier},
                {"email": NFD_RENEE, "changed_at": later},
                {"email": "plain@example.com", "changed_at": later},
            ])
        upgrade(engine)
        with engine.connect() as connection:
            rows = dict(connection.execute(select(MirrorUnsubscribe.email, MirrorUnsubscribe.changed_at)).all())
        assert set(rows) == {"user@bücher.example", NFC_RENEE, "plain@example.com"}
        assert as_utc(rows["user@bücher.example"]) == earlier  # merged: unsubscribed since the earlier of the two
    finally:
        engine.dispose()
