"""Standard Webhooks verification on its own: the standard's published test vector, then each way to fail."""
import base64
from datetime import datetime, timedelta, timezone

import pytest

from gateway.standard_webhooks import (
    BodyNotText,
    MalformedHeaders,
    MissingHeaders,
    NoMatchingSignature,
    OutsideTolerance,
    UnusableSecret,
    Verified,
    sign,
    verify,
)

# The test vector of the standard's reference libraries (standard-webhooks/standard-webhooks, e.g.
# libraries/python/tests/test_webhooks.py, test_sign_function).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
PAYLOAD = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
# The same vector's "invalid signature": the expected one with its last base64 digit changed.
WRONG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="

SENT_AT = datetime.fromtimestamp(TIMESTAMP, timezone.utc)


def headers(signature=EXPECTED, *, webhook_id=MSG_ID, timestamp=str(TIMESTAMP)):
    return {"webhook-id": webhook_id, "webhook-timestamp": timestamp, "webhook-signature": signature}


def test_the_published_vector_signs_to_the_published_signature():
    assert sign(SECRET, MSG_ID, TIMESTAMP, PAYLOAD) == EXPECTED


def test_the_published_vector_verifies():
    assert verify(SECRET, PAYLOAD, headers(), SENT_AT) == Verified(MSG_ID, TIMESTAMP)


def test_the_secret_prefix_and_header_case_do_not_matter():
    title_case = {name.title(): value for name, value in headers().items()}  # as Werkzeug spells them
    assert verify(SECRET.removeprefix("whsec_"), PAYLOAD, title_case, SENT_AT).webhook_id == MSG_ID


def test_an_unpadded_secret_is_the_padded_one():
    padded = "whsec_" + base64.b64encode(b"k" * 31).decode()
    assert padded.endswith("=")
    assert sign(padded.rstrip("="), MSG_ID, TIMESTAMP, PAYLOAD) == sign(padded, MSG_ID, TIMESTAMP, PAYLOAD)


def test_the_published_invalid_signature_does_not_match():
    with pytest.raises(NoMatchingSignature):
        verify(SECRET, PAYLOAD, headers(WRONG), SENT_AT)


@pytest.mark.parametrize("change", ["body", "webhook-id", "webhook-timestamp", "secret"])
def test_anything_signed_changed_breaks_the_signature(change):
    body, hdrs, secret = PAYLOAD, headers(), SECRET
    if change == "body":
        body = PAYLOAD.replace(b"2432232314", b"2432232315")
    elif change == "secret":
        secret = "whsec_" + base64.b64encode(b"another secret").decode()
    else:
        hdrs[change] = hdrs[change][:-1] + ("1" if hdrs[change][-1] != "1" else "2")
    with pytest.raises(NoMatchingSignature):
        verify(secret, body, hdrs, SENT_AT)


@pytest.mark.parametrize("seconds", [0, 299, 300, -300])
def test_a_timestamp_within_five_minutes_either_way_passes(seconds):
    assert verify(SECRET, PAYLOAD, headers(), SENT_AT + timedelta(seconds=seconds)).timestamp == TIMESTAMP


def test_a_timestamp_over_five_minutes_old_is_stale():
    with pytest.raises(OutsideTolerance) as stale:
        verify(SECRET, PAYLOAD, headers(), SENT_AT + timedelta(minutes=6))
    assert stale.value.skew == 360 and not stale.value.in_future


def test_a_timestamp_over_five_minutes_ahead_is_from_the_future():
    with pytest.raises(OutsideTolerance) as ahead:
        verify(SECRET, PAYLOAD, headers(), SENT_AT - timedelta(seconds=301))
    assert ahead.value.skew == -301 and ahead.value.in_future


def test_the_window_is_checked_before_the_signature():
    """A stale request is told it is stale, whatever its signature: re-signing it now is the fix."""
    with pytest.raises(OutsideTolerance):
        verify(SECRET, PAYLOAD, headers(WRONG), SENT_AT + timedelta(hours=1))


@pytest.mark.parametrize("separator", [" ", "  ", "\t"])
def test_one_valid_signature_among_several_passes(separator):
    other = "v1," + base64.b64encode(b"signed with a retired secret!!!!").decode()
    several = separator.join([other, "v2," + EXPECTED.removeprefix("v1,"), EXPECTED, other])
    assert verify(SECRET, PAYLOAD, headers(several), SENT_AT).webhook_id == MSG_ID


def test_several_signatures_none_valid_do_not_match():
    with pytest.raises(NoMatchingSignature):
        verify(SECRET, PAYLOAD, headers(f"{WRONG} {WRONG}"), SENT_AT)


@pytest.mark.parametrize("version", ["v2", "v1a", "V1"])
def test_the_right_mac_under_another_version_prefix_does_not_match(version):
    with pytest.raises(NoMatchingSignature):
        verify(SECRET, PAYLOAD, headers(EXPECTED.replace("v1,", f"{version},")), SENT_AT)


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_AAAAA", "whsec_", ""])
def test_a_secret_that_is_not_base64_or_empty_is_unusable(secret):
    with pytest.raises(UnusableSecret):
        verify(secret, PAYLOAD, headers(), SENT_AT)
    with pytest.raises(UnusableSecret):
        sign(secret, MSG_ID, TIMESTAMP, PAYLOAD)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_each_header_is_required(missing):
    for hdrs in ({k: v for k, v in headers().items() if k != missing}, {**headers(), missing: ""}):
        with pytest.raises(MissingHeaders):
            verify(SECRET, PAYLOAD, hdrs, SENT_AT)


@pytest.mark.parametrize("timestamp", ["soon", "1.6e9", "-1614265330", "1614265330.0", "１６１４２６５３３０",
                                       "1" * 13])
def test_a_timestamp_not_in_whole_seconds_is_malformed(timestamp):
    with pytest.raises(MalformedHeaders, match="whole seconds"):
        verify(SECRET, PAYLOAD, headers(timestamp=timestamp), SENT_AT)


@pytest.mark.parametrize("signature", ["v1", "v1,a,b", "v1,not base64!", f"{EXPECTED},x", ",abc"])
def test_a_signature_not_version_comma_base64_is_malformed(signature):
    with pytest.raises(MalformedHeaders, match="webhook-signature"):
        verify(SECRET, PAYLOAD, headers(signature), SENT_AT)


def test_a_body_that_is_not_utf8_is_refused_even_if_signed():
    body = b'{"test": "\xff"}'
    with pytest.raises(BodyNotText):
        verify(SECRET, body, headers(sign(SECRET, MSG_ID, TIMESTAMP, body)), SENT_AT)


def test_now_must_say_its_time_zone():
    with pytest.raises(ValueError):
        verify(SECRET, PAYLOAD, headers(), SENT_AT.replace(tzinfo=None))
