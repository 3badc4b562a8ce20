"""Events in the logs: stable names, JSON or key=value lines, no allowed addresses; the switch is loud while off."""
from __future__ import annotations

import json
import logging

import pytest

from gateway.events import CATALOGUE, emit, mask_address
from gateway.logs import LOG_FORMATTERS
from gateway.switch import SwitchWatch
from tests.conftest import ADMIN, CALLER, FakeClock

JANE, BOB = "jane@example.com", "bob@example.com"


@pytest.fixture
def lines():
    """What the gate's handler writes, as LOG_FORMAT=json and LOG_FORMAT=text would: {format: [line, ...]}."""

    class Keep(logging.Handler):
        def __init__(self, log_format):
            super().__init__(logging.INFO)
            self.setFormatter(LOG_FORMATTERS[log_format]())
            self.lines = []

        def emit(self, record):
            self.lines.append(self.format(record))

    handlers = {name: Keep(name) for name in LOG_FORMATTERS}
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    for handler in handlers.values():
        root.addHandler(handler)
    yield {name: handler.lines for name, handler in handlers.items()}
    for handler in handlers.values():
        root.removeHandler(handler)
    root.setLevel(level)


def test_a_denied_check_is_one_event_with_masked_recipients_and_an_allowed_one_is_not_logged(make_gate, simulator,
                                                                                            lines):
    simulator.state.add_lead(JANE, unsubscribed=True)
    simulator.state.add_lead(BOB)
    client = make_gate(simulator, enabled=True).test_client()
    body = {"source": "web", "workflow": "group_send", "sender": "rep@acme.example",
            "messages": [{"id": "m1", "recipients": [{"email": JANE, "type": "to"}, {"email": BOB, "type": "cc"}]}]}
    answer = client.post("/v1/checks", json=body, headers=CALLER).get_json()
    assert answer["results"][0]["deliver_to"] == [BOB]
    allowed_only = {**body, "messages": [{"id": "m2", "recipients": [{"email": BOB, "type": "to"}]}]}
    assert client.post("/v1/checks", json=allowed_only, headers=CALLER).status_code == 200

    events = [json.loads(line) for line in lines["json"]]
    assert all(set(event) == {"ts", "level", "event", "fields"} for event in events)
    denied = [event for event in events if event["event"] == "check.denied"]
    assert len(denied) == 1
    assert denied[0]["fields"] == {
        "check_id": answer["check_id"], "source": "web", "workflow": "group_send", "blocked": 1,
        "reasons": ["unsubscribed"], "checked_via": ["live"], "recipients": ["j***@example.com"]}
    assert denied[0]["ts"].endswith("Z") and denied[0]["level"] == "info"
    assert not [event for event in events if event["event"] == "check.allowed"]
    for line in lines["json"] + lines["text"]:
        assert BOB not in line and JANE not in line and simulator.state.client_secret not in line
    text = [line for line in lines["text"] if " check.denied " in line]
    assert text and f"INFO check.denied check_id={answer['check_id']} source=web workflow=group_send blocked=1 " \
                     "reasons=unsubscribed checked_via=live recipients=j***@example.com" in text[0]


def test_settings_changes_are_events_naming_who(make_gate, lines):
    client = make_gate().test_client()
    assert client.patch("/v1/admin/settings", json={"failure_mode": "allow"}, headers=ADMIN).status_code == 200
    changed = [json.loads(line) for line in lines["json"] if '"settings.changed"' in line]
    assert [event["fields"] for event in changed] == [{"by": "test-admin", "via": "api", "failure_mode": "allow"}]


def test_text_lines_quote_what_would_break_them(lines):
    emit("mirror.sync_failed", logging.WARNING, owner="w-1", error='Marketo: error 606 "rate" = limit')
    emit("mirror.synced", owner="w-1", windows_loaded=3, change_pages=0, unsubscribed=2, resubscribed=0)
    warning, synced = lines["text"]
    assert warning.endswith(' WARNING mirror.sync_failed owner=w-1 error="Marketo: error 606 \\"rate\\" = limit"')
    assert synced.endswith(" INFO mirror.synced owner=w-1 windows_loaded=3 change_pages=0 unsubscribed=2 resubscribed=0")
    assert json.loads(lines["json"][1])["fields"]["windows_loaded"] == 3


def test_plain_log_records_are_json_too(lines):
    logging.getLogger("gateway.somewhere").warning("a %s line", "prose")
    assert json.loads(lines["json"][0]) == {"ts": json.loads(lines["json"][0])["ts"], "level": "warning",
                                            "event": "log",
                                            "fields": {"logger": "gateway.somewhere", "message": "a prose line"}}


def test_only_catalogued_events_can_be_emitted():
    with pytest.raises(ValueError, match="unknown event"):
        emit("check.maybe")
    for name in ("check.denied", "mirror.synced", "mirror.load_progress", "marketo.error", "salesforce.delivered",
                 "settings.changed", "switch.off"):
        assert name in CATALOGUE


def test_every_event_is_in_the_operations_notes():
    from pathlib import Path

    notes = (Path(__file__).resolve().parent.parent / "docs" / "operations.md").read_text(encoding="utf-8")
    missing = [name for name in CATALOGUE if f"`{name}`" not in notes]
    assert not missing, f"docs/operations.md does not list the events {missing}"


@pytest.mark.parametrize("address, masked", [("jane.doe@example.com", "j***@example.com"),
                                             ("x@sub.example.org", "x***@sub.example.org"),
                                             ("not-an-address", "***"), ("", "***")])
def test_masked_addresses_keep_the_domain_only(address, masked):
    assert mask_address(address) == masked


def test_the_switch_warns_at_start_then_every_interval_while_off(store, caplog):
    clock = FakeClock()
    watch = SwitchWatch(store, interval=300, process="web", clock=clock)
    with caplog.at_level(logging.WARNING, logger="gateway.events"):
        assert watch.check() is True  # at start
        clock.now += 299
        assert watch.check() is False
        clock.now += 1
        assert watch.check() is True
        store.settings.update({"marketo_check_enabled": True}, updated_by="test")
        clock.now += 600
        assert watch.check() is False  # on: silent
        store.settings.update({"marketo_check_enabled": False}, updated_by="test")
        clock.now += 1
        assert watch.check() is True  # off again: at once
    warnings = [record for record in caplog.records if getattr(record, "event", None) == "switch.off"]
    assert len(warnings) == 3 and all(record.levelno == logging.WARNING for record in warnings)
    assert warnings[0].fields["enabled"] is False and warnings[0].fields["process"] == "web"
    assert "PATCH /v1/admin/settings" in warnings[0].fields["message"] and "console" in warnings[0].fields["message"]


def test_the_watch_thread_warns_at_once_and_stops_when_told(store, caplog):
    import threading

    stop = threading.Event()
    watch = SwitchWatch(store, interval=300, process="worker")
    with caplog.at_level(logging.WARNING, logger="gateway.events"):
        thread = watch.start(stop)
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert [record.fields["process"] for record in caplog.records if getattr(record, "event", None) == "switch.off"] \
        == ["worker"]
