"""The workflow rules, as a pure function: no database, no HTTP."""
import pytest

from gateway.decisions import CheckRequest, Message, Recipient, Verdict, decide
from schemas.common import normalize_address

UNSUB = Verdict("deny", "unsubscribed", "mirror")
OK = Verdict("allow", "allowed", "mirror")
UNKNOWN = Verdict("allow", "not_in_marketo", "live")
HELD = Verdict("deny", "unverified", "policy")
LET_THROUGH = Verdict("allow", "unverified", "policy")
OFF = Verdict("allow", "check_disabled", "setting")


def msg(*addresses, id="m1"):
    recipients = []
    for item in addresses:
        kind, _, raw = item.partition(":") if item.split(":")[0] in ("to", "cc", "bcc") else ("to", "", item)
        recipients.append(Recipient(raw=raw, email=normalize_address(raw), type=kind))
    return Message(id=id, recipients=tuple(recipients))


def run(workflow, *messages, verdicts):
    return decide(CheckRequest("web", workflow, "rep@acme.example", tuple(messages)), verdicts)


WHOLE_MESSAGE_WORKFLOWS = ["plugin_send", "single_send", "campaign_send", "multi_select_send"]


@pytest.mark.parametrize("workflow", WHOLE_MESSAGE_WORKFLOWS)
@pytest.mark.parametrize("slot", ["to", "cc", "bcc"])
def test_one_unsubscribed_recipient_in_any_slot_denies_the_whole_message(workflow, slot):
    (result,) = run(workflow, msg("to:bob@example.com", f"{slot}:jane@example.com"),
                    verdicts={"bob@example.com": OK, "jane@example.com": UNSUB})
    assert result.decision == "deny"
    assert result.reason_code == "unsubscribed"
    assert result.deliver_to == ()
    assert result.blocked == ("jane@example.com",)
    assert result.reason == "Not sent: jane@example.com has unsubscribed from email in Marketo."
    by_email = {r.email: r for r in result.recipients}
    assert by_email["jane@example.com"].decision == "deny" and by_email["jane@example.com"].checked_via == "mirror"
    assert by_email["bob@example.com"].decision == "allow"


@pytest.mark.parametrize("workflow", WHOLE_MESSAGE_WORKFLOWS)
def test_message_with_nobody_suppressed_is_allowed_to_everyone(workflow):
    (result,) = run(workflow, msg("Bob <BOB@example.com>", "cc:new@example.com"),
                    verdicts={"bob@example.com": OK, "new@example.com": UNKNOWN})
    assert result.decision == "allow" and result.reason_code == "allowed"
    assert result.deliver_to == ("bob@example.com", "new@example.com")
    assert [r.reason_code for r in result.recipients] == ["allowed", "not_in_marketo"]


def test_multi_select_decides_each_message_on_its_own():
    results = run("multi_select_send", msg("jane@example.com", id="a"), msg("bob@example.com", id="b"),
                  verdicts={"jane@example.com": UNSUB, "bob@example.com": OK})
    assert [(r.id, r.decision) for r in results] == [("a", "deny"), ("b", "allow")]


def test_group_send_drops_suppressed_recipients_and_goes_on():
    (result,) = run("group_send", msg("jane@example.com", "cc:bob@example.com", "bcc:not-an-address", "x@example.com"),
                    verdicts={"jane@example.com": UNSUB, "bob@example.com": OK, "x@example.com": UNKNOWN})
    assert result.decision == "allow" and result.reason_code == "allowed"
    assert result.deliver_to == ("bob@example.com", "x@example.com")
    assert result.blocked == ("jane@example.com", "not-an-address")
    assert "sending to 2 of 4 recipients" in result.reason


def test_group_send_with_everyone_suppressed_is_denied_with_no_recipients_left():
    (result,) = run("group_send", msg("jane@example.com", "JANE@example.com"), verdicts={"jane@example.com": UNSUB})
    assert result.decision == "deny" and result.reason_code == "no_recipients_left"
    assert result.deliver_to == () and result.blocked == ("jane@example.com",)


def test_malformed_address_denies_that_recipient_as_invalid_address():
    (result,) = run("single_send", msg("bob@example.com", "cc:bob at example"), verdicts={"bob@example.com": OK})
    assert result.decision == "deny" and result.reason_code == "invalid_address"
    bad = result.recipients[1]
    assert (bad.email, bad.decision, bad.reason_code, bad.checked_via) == ("bob at example", "deny", "invalid_address", "validation")


def test_unsubscribed_names_the_message_before_other_reasons():
    (result,) = run("single_send", msg("nope", "jane@example.com", "who@example.com"),
                    verdicts={"jane@example.com": UNSUB, "who@example.com": HELD})
    assert result.reason_code == "unsubscribed"
    assert result.reason.startswith("Not sent: jane@example.com has unsubscribed")
    assert "2 other recipients cannot be sent to either" in result.reason
    assert set(result.blocked) == {"jane@example.com", "nope", "who@example.com"}


def test_failure_policy_deny_gives_unverified_and_allow_lets_it_through():
    (held,) = run("plugin_send", msg("who@example.com"), verdicts={"who@example.com": HELD})
    assert (held.decision, held.reason_code) == ("deny", "unverified")
    assert "try again" in held.reason
    (through,) = run("plugin_send", msg("who@example.com"), verdicts={"who@example.com": LET_THROUGH})
    assert (through.decision, through.reason_code) == ("allow", "allowed")
    assert through.recipients[0].reason_code == "unverified"
    assert "could not be checked" in through.reason


def test_check_disabled_allows_and_says_so():
    (result,) = run("single_send", msg("jane@example.com"), verdicts={"jane@example.com": OFF})
    assert (result.decision, result.reason_code) == ("allow", "check_disabled")
    assert result.recipients[0].checked_via == "setting"


def test_reason_fits_outlook_smart_alerts_limit_with_many_long_addresses():
    addresses = [f"{'x' * 50}{i}@{'long-domain.' * 8}example.com" for i in range(50)]
    (result,) = run("single_send", msg(*addresses), verdicts=dict.fromkeys(addresses, UNSUB))
    assert result.decision == "deny"
    assert len(result.reason) <= 500
    assert "and 49 others have unsubscribed" in result.reason
    assert all(len(r.reason) <= 500 for r in result.recipients)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("jane@example.com", "jane@example.com"),
        ("  Jane@Example.COM ", "jane@example.com"),
        ("Jane Doe <Jane.Doe@Example.com>", "jane.doe@example.com"),
        ('"Doe, Jane" <jane@example.com>', "jane@example.com"),
        ("jane@", None),
        ("", None),
        ("a <b@example.com> <c@example.com>", None),
        ("jane@localhost", None),
        ("x" * 2000 + "@example.com", None),
    ],
)
def test_addresses_are_unwrapped_trimmed_and_lowercased(raw, expected):
    assert normalize_address(raw) == expected
