"""Each webhook-id of a signed callout is answered once per key.

The first 2xx answer is kept in `webhook_deliveries` and given again, same status and body, to every repeat
(a Salesforce retry, a replay within the timestamp window), without running the check or logging blocked
sends a second time. A repeat while the first is still being answered is 409 `delivery_in_progress`; the
id reused for another request is 409 `webhook_id_reused`.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import timedelta

from flask import current_app, make_response, request
from sqlalchemy.exc import SQLAlchemyError

from gateway.api.errors import ApiError
from gateway.domain import DeliveryState

log = logging.getLogger(__name__)

MAX_WEBHOOK_ID = 255  # webhook_deliveries.webhook_id
# A claim still in progress after this long belongs to a process that died; a check's deadline is seconds.
DELIVERY_STALE_AFTER = timedelta(seconds=60)
IN_PROGRESS_RETRY_AFTER = "1"
REPLAY_HEADER = "Idempotent-Replayed"


def deliver_once(key_id: int, webhook_id: str, produce: Callable[[], object]):
    """Answer a signed callout once per (key, webhook-id): run `produce` for the first delivery only."""
    store = current_app.extensions["gate"].store
    request_hash = hashlib.sha256(request.path.encode() + b"\n" + request.get_data(cache=True)).hexdigest()
    claim = store.deliveries.claim(key_id, webhook_id, request_hash, stale_after=DELIVERY_STALE_AFTER)
    if claim.state == DeliveryState.DONE:
        response = current_app.response_class(claim.body, status=claim.status, mimetype="application/json")
        response.headers[REPLAY_HEADER] = "true"
        return response
    if claim.state == DeliveryState.IN_PROGRESS:
        raise ApiError(409, "delivery_in_progress",
                       "A delivery with this webhook-id is being answered right now; retry shortly.",
                       headers={"Retry-After": IN_PROGRESS_RETRY_AFTER})
    if claim.state == DeliveryState.MISMATCH:
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
