"""Signed callouts, Standard Webhooks form, for stored caller keys made with `--require-signature`.

The caller sends `webhook-id`, `webhook-timestamp` (whole seconds since the epoch) and `webhook-signature`
(`v1,<base64 HMAC-SHA256>`, several allowed, space-separated) over `{id}.{timestamp}.{raw body}`. The gate
verifies the bytes it received, before any JSON parsing: re-serializing what Apex sent would not give
the bytes Apex signed. Like Warehouse, which checks a disclosure's signature on `request.body` before it
reads `request.json_body`, nothing is trusted or written until the signature holds.

Each webhook-id is answered once per key: its first 2xx answer is kept in `webhook_deliveries` and given
again, same status and body, to every repeat (a Salesforce retry, a replay within the timestamp window),
without running the check or logging blocked sends a second time.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta

from flask import current_app, make_response, request
from sqlalchemy.exc import SQLAlchemyError
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from gateway.api.errors import ApiError

log = logging.getLogger(__name__)

# Standard Webhooks' tolerance, the same the standardwebhooks package applies.
TIMESTAMP_TOLERANCE = timedelta(minutes=5)
MAX_WEBHOOK_ID = 255  # webhook_deliveries.webhook_id
# A claim still in progress after this long belongs to a process that died; a check's deadline is seconds.
DELIVERY_STALE_AFTER = timedelta(seconds=60)
IN_PROGRESS_RETRY_AFTER = "1"
REPLAY_HEADER = "Idempotent-Replayed"


def _invalid(message: str) -> ApiError:
    return ApiError(401, "invalid_signature", message)


def _stale(message: str) -> ApiError:
    return ApiError(401, "stale_signature", message)


def verify_signature(secret: str | None) -> str:
    """Check this request's Standard Webhooks signature against `secret`; returns its webhook-id."""
    body = request.get_data(cache=True)  # the raw bytes; a body over the size limit is a 413 here
    webhook_id = request.headers.get("webhook-id", "")
    timestamp = request.headers.get("webhook-timestamp", "")
    signature = request.headers.get("webhook-signature", "")
    if not (webhook_id and timestamp and signature):
        raise _invalid("This key requires signed requests: send webhook-id, webhook-timestamp and "
                       "webhook-signature (Standard Webhooks).")
    if len(webhook_id) > MAX_WEBHOOK_ID:
        raise _invalid(f"webhook-id is longer than {MAX_WEBHOOK_ID} characters.")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise _invalid("webhook-timestamp must be whole seconds since 1970-01-01 UTC.")
    skew = time.time() - int(timestamp)
    if abs(skew) > TIMESTAMP_TOLERANCE.total_seconds():
        raise _stale(
            f"webhook-timestamp is {abs(skew) / 60:.0f} minutes {'old' if skew > 0 else 'in the future'}; the gate "
            f"accepts {TIMESTAMP_TOLERANCE.total_seconds() / 60:.0f} minutes either way. Sign each request, "
            "retries too, when it is sent, and check the sender's clock."
        )
    if not secret:
        raise _invalid("This key requires signed requests but has no signing secret; create a new key.")
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": " ".join(signature.split()),  # the package splits on single spaces
    }
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except WebhookVerificationError as error:
        # The package checks the window again with its own clock; crossing its edge in between is "stale".
        if "timestamp" in str(error).lower():
            raise _stale("webhook-timestamp is outside the 5 minutes the gate accepts.") from None
        raise _invalid("The webhook-signature does not match the body and headers; sign exactly the bytes "
                       "sent, as `{webhook-id}.{webhook-timestamp}.{body}`.") from None
    except ValueError:
        # The package raises these for a malformed `version,signature` pair, bad base64, or a body not UTF-8.
        raise _invalid("The webhook-signature is malformed: send `v1,<base64 HMAC-SHA256>`.") from None
    return webhook_id


def deliver_once(key_id: int, webhook_id: str, produce: Callable[[], object]):
    """Answer a signed callout once per (key, webhook-id): run `produce` for the first delivery only."""
    store = current_app.extensions["gate"].store
    request_hash = hashlib.sha256(request.path.encode() + b"\n" + request.get_data(cache=True)).hexdigest()
    claim = store.deliveries.claim(key_id, webhook_id, request_hash, stale_after=DELIVERY_STALE_AFTER)
    if claim.state == "done":
        response = current_app.response_class(claim.body, status=claim.status, mimetype="application/json")
        response.headers[REPLAY_HEADER] = "true"
        return response
    if claim.state == "in_progress":
        raise ApiError(409, "delivery_in_progress",
                       "A delivery with this webhook-id is being answered right now; retry shortly.",
                       headers={"Retry-After": IN_PROGRESS_RETRY_AFTER})
    if claim.state == "mismatch":
        raise ApiError(409, "webhook_id_reused",
                       "This webhook-id was already used for a different request; give every delivery its own id.")
    try:
        response = make_response(produce())
    except BaseException:
        _release(store, claim.id)
        raise
    if 200 <= response.status_code < 300:
        # Blocked sends are logged in the check's own transaction, just before this: should this write fail
        # (the database gone in between), the claim stays in progress and a retry after
        # DELIVERY_STALE_AFTER runs the check again.
        store.deliveries.complete(claim.id, response.status_code, response.get_data(as_text=True))
    else:
        _release(store, claim.id)  # nothing was done: a retry of the same id may run afresh
    return response


def _release(store, delivery_id: int) -> None:
    try:
        store.deliveries.release(delivery_id)
    except SQLAlchemyError:
        log.warning("could not release delivery %s; it is taken over after %s", delivery_id, DELIVERY_STALE_AFTER)
