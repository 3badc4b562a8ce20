"""Signed callouts by webhook-id: claimed before their check runs, then holding the answer for the sender's retries."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from gateway.domain import DeliveryState
from gateway.store.common import utcnow
from gateway.store.models import WebhookDelivery
from gateway.store.repository import Repository

# How long a signed callout's answer is kept for repeats of its webhook-id (a sender's retries re-sign with a
# fresh timestamp, so the timestamp window does not bound them); the worker drops older ones.
DELIVERY_RETENTION = timedelta(days=7)


@dataclass(frozen=True)
class DeliveryClaim:
    """The outcome of claiming a signed callout's webhook-id.

    state: `claimed` (run the check, then complete or release), `done` (answer `status`, `body` again),
    `in_progress` (another request holds it), `mismatch` (the id was used for a different request).
    """

    id: int | None
    state: DeliveryState
    status: int | None = None
    body: str | None = None


class DeliveriesRepository(Repository):
    def claim(self, key_id: int, webhook_id: str, request_hash: str, *, stale_after: timedelta) -> DeliveryClaim:
        """Claim a webhook-id for one key before its check runs; the unique (key_id, webhook_id) decides races.

        The claim is its own committed transaction, so a concurrent delivery of the same id fails its insert
        and finds the row in progress. A claim left in progress longer than `stale_after` (its process died)
        may be taken over by one later delivery.
        """
        for _attempt in range(3):
            now = utcnow()
            try:
                with self._writing() as session:
                    row = WebhookDelivery(key_id=key_id, webhook_id=webhook_id, request_hash=request_hash,
                                          created_at=now)
                    session.add(row)
                    session.flush()
                    return DeliveryClaim(row.id, DeliveryState.CLAIMED)
            except IntegrityError:
                pass  # the id is claimed already: see by whom and how far it got
            with self._writing() as session:
                row = session.scalar(select(WebhookDelivery).where(
                    WebhookDelivery.key_id == key_id, WebhookDelivery.webhook_id == webhook_id))
                if row is None:
                    continue  # released between our insert and this read: claim it again
                if row.request_hash != request_hash:
                    return DeliveryClaim(row.id, DeliveryState.MISMATCH)
                if row.status is not None:
                    return DeliveryClaim(row.id, DeliveryState.DONE, row.status, row.response_body)
                taken = session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id == row.id, WebhookDelivery.status.is_(None),
                           WebhookDelivery.created_at < now - stale_after)
                    .values(created_at=now)
                    .execution_options(synchronize_session=False)  # SQLite's naive datetimes can't be evaluated here
                ).rowcount
                return DeliveryClaim(row.id, DeliveryState.CLAIMED if taken == 1 else DeliveryState.IN_PROGRESS)
        return DeliveryClaim(None, DeliveryState.IN_PROGRESS)

    def complete(self, delivery_id: int, status: int, body: str) -> None:
        with self._writing() as session:
            session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                .values(status=status, response_body=body, completed_at=utcnow())
            )

    def release(self, delivery_id: int) -> None:
        """Forget a claim whose request was not answered with a 2xx: a retry of that id runs afresh."""
        with self._writing() as session:
            session.execute(
                delete(WebhookDelivery).where(WebhookDelivery.id == delivery_id, WebhookDelivery.status.is_(None))
            )

    def prune(self, older_than: datetime) -> int:
        """Drop deliveries created before `older_than`; returns how many."""
        with self._writing() as session:
            return session.execute(delete(WebhookDelivery).where(WebhookDelivery.created_at < older_than)).rowcount
