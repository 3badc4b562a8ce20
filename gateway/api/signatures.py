"""Signed callouts, Standard Webhooks form, for stored caller keys made with `--require-signature`.

The caller sends `webhook-id`, `webhook-timestamp` (whole seconds since the epoch) and `webhook-signature`
(`v1,<base64 HMAC-SHA256>`, several allowed, space-separated) over `{id}.{timestamp}.{raw body}`. The gate
verifies the bytes it received, before any JSON parsing: re-serializing what Apex sent would not give
the bytes Apex signed. Like Warehouse, which checks a disclosure's signature on `request.body` before it
reads `request.json_body`, nothing is trusted or written until the signature holds.

The verification itself is gateway.standard_webhooks.verify; this module gives it the request and turns
each way it can fail into the gate's answer. Repeats of a webhook-id are replay.deliver_once's.
"""
from __future__ import annotations

from datetime import datetime, timezone

from flask import request

from gateway import standard_webhooks as sw
from gateway.api.errors import ApiError
from gateway.api.replay import MAX_WEBHOOK_ID

TOLERANCE_MINUTES = sw.TIMESTAMP_TOLERANCE.total_seconds() / 60


def verify_request(secret: str | None) -> str:
    """Check this request's Standard Webhooks signature against `secret`; returns its webhook-id."""
    body = request.get_data(cache=True)  # the raw bytes; a body over the size limit is a 413 here
    if len(request.headers.get("webhook-id", "")) > MAX_WEBHOOK_ID:
        raise _invalid(f"webhook-id is longer than {MAX_WEBHOOK_ID} characters.")
    try:
        return sw.verify(secret or "", body, request.headers, datetime.now(timezone.utc)).webhook_id
    except sw.SignatureRejected as rejected:
        raise _refusal(rejected) from None
    except sw.UnusableSecret:
        raise _invalid("This key requires signed requests but has no signing secret; create a new key."
                       if not secret else "This key's signing secret is unusable; create a new key.") from None


def _refusal(rejected: sw.SignatureRejected) -> ApiError:
    match rejected:
        case sw.MissingHeaders():
            return _invalid("This key requires signed requests: send webhook-id, webhook-timestamp and "
                            "webhook-signature (Standard Webhooks).")
        case sw.OutsideTolerance():
            return ApiError(401, "stale_signature",
                            f"webhook-timestamp is {abs(rejected.skew) / 60:.0f} minutes "
                            f"{'in the future' if rejected.in_future else 'old'}; the gate accepts "
                            f"{TOLERANCE_MINUTES:.0f} minutes either way. Sign each request, retries too, "
                            "when it is sent, and check the sender's clock.")
        case sw.NoMatchingSignature():
            return _invalid("The webhook-signature does not match the body and headers; sign exactly the bytes "
                            "sent, as `{webhook-id}.{webhook-timestamp}.{body}`.")
        case sw.BodyNotText():
            return _invalid("The body is not UTF-8; Standard Webhooks signs text, so send the JSON as UTF-8.")
        case _:  # MalformedHeaders: its message says which header and its form
            return _invalid(str(rejected))


def _invalid(message: str) -> ApiError:
    return ApiError(401, "invalid_signature", message)
