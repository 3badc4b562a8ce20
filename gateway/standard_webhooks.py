"""Standard Webhooks' symmetric signatures (https://www.standardwebhooks.com/), signed and verified.

A sender signs `{webhook-id}.{webhook-timestamp}.{body}` with HMAC-SHA256 under the base64-decoded secret
(`whsec_<base64>`) and sends `webhook-signature: v1,<base64 MAC>`, several space-separated when it holds
more than one secret. Verification is over the body's raw bytes, never a re-serialization of its JSON.

`verify` is pure (no web framework, no clock of its own: `now` is given) and tells each way a request can
fail apart by the exception's type, so a caller never reads meaning out of error text.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"  # symmetric HMAC-SHA256; others (`v1a`, asymmetric) are skipped, not failed
TIMESTAMP_TOLERANCE = timedelta(minutes=5)  # either way, as the standard's reference libraries allow
MAX_TIMESTAMP_DIGITS = 12
MALFORMED_SIGNATURE = "The webhook-signature is malformed: send `v1,<base64 HMAC-SHA256>`."


class SignatureRejected(Exception):
    """The request is not verifiably signed; the subclass says why."""


class MissingHeaders(SignatureRejected):
    """webhook-id, webhook-timestamp or webhook-signature is absent or empty."""


class MalformedHeaders(SignatureRejected):
    """A header is present but not in the standard's form; the message says which and how."""


class BodyNotText(SignatureRejected):
    """The body is not UTF-8. The standard signs text (its reference libraries take a string), so such
    bytes cannot come from a conforming signer."""


class OutsideTolerance(SignatureRejected):
    """webhook-timestamp is further than TIMESTAMP_TOLERANCE from `now`: a stale (or replayed) request,
    or a sender whose clock is off."""

    def __init__(self, skew: float):
        super().__init__(f"webhook-timestamp is {abs(skew):.0f} s {'in the future' if skew < 0 else 'old'}")
        self.skew = skew  # seconds `now` is past the timestamp; negative when the timestamp is ahead

    @property
    def in_future(self) -> bool:
        return self.skew < 0


class NoMatchingSignature(SignatureRejected):
    """No `v1` signature in webhook-signature matches the body and headers under this secret."""


class UnusableSecret(ValueError):
    """The verifier's secret is empty or not base64: its own configuration is at fault, not the request."""


@dataclass(frozen=True)
class Verified:
    webhook_id: str
    timestamp: int  # seconds since the epoch, as signed


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature a sender puts in webhook-signature."""
    mac = _mac(decode_secret(secret), webhook_id, str(timestamp), body)
    return f"{SIGNATURE_VERSION},{base64.b64encode(mac).decode()}"


def verify(secret: str, body: bytes, headers: Mapping[str, str], now: datetime) -> Verified:
    """Verify a request's signature; raises a SignatureRejected subclass, or UnusableSecret for a bad `secret`.

    `headers` is looked up without regard to case; `now` must be timezone-aware.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    lowered = {name.lower(): value for name, value in headers.items()}
    webhook_id = lowered.get("webhook-id", "")
    timestamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "")
    if not (webhook_id and timestamp and signatures):
        raise MissingHeaders("send webhook-id, webhook-timestamp and webhook-signature")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= MAX_TIMESTAMP_DIGITS):
        raise MalformedHeaders("webhook-timestamp must be whole seconds since 1970-01-01 UTC.")
    skew = now.timestamp() - int(timestamp)
    if abs(skew) > TIMESTAMP_TOLERANCE.total_seconds():
        raise OutsideTolerance(skew)
    key = decode_secret(secret)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyNotText("the body is not UTF-8") from None
    expected = _mac(key, webhook_id, timestamp, body)
    for entry in signatures.split():
        version, signature = _parse_entry(entry)
        if version == SIGNATURE_VERSION and hmac.compare_digest(expected, _decode_signature(signature)):
            return Verified(webhook_id, int(timestamp))
    raise NoMatchingSignature("no v1 signature matches")


def decode_secret(secret: str) -> bytes:
    """The key bytes of `whsec_<base64>` (the prefix and the base64 padding are optional)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    encoded += "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise UnusableSecret("the signing secret is not base64") from None
    if not key:
        raise UnusableSecret("the signing secret is empty")
    return key


def _parse_entry(entry: str) -> tuple[str, str]:
    version, comma, signature = entry.partition(",")
    if not (version and comma) or "," in signature:
        raise MalformedHeaders(MALFORMED_SIGNATURE)
    return version, signature


def _decode_signature(signature: str) -> bytes:
    try:
        return base64.b64decode(signature, validate=True)
    except binascii.Error:
        raise MalformedHeaders(MALFORMED_SIGNATURE) from None


def _mac(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> bytes:
    return hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
