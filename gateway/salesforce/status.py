"""The `salesforce` object of GET /v1/admin/status: is it set up, how did the last calls go, what is owed."""
from __future__ import annotations

from gateway.domain import Workflow
from gateway.salesforce.interfaces import NOT_CONFIGURED


def salesforce_status(gate) -> dict:
    config = gate.config
    state = gate.store.salesforce.status()
    outbox = gate.store.outbox.summary()
    return {
        "configured": config.salesforce_configured,
        "log_blocked_sends": config.salesforce_configured and config.salesforce_log_blocked_sends,
        "opt_out_writeback": config.salesforce_configured and config.salesforce_opt_out_writeback,
        "message": None if config.salesforce_configured else NOT_CONFIGURED,
        "connected": state.connected,
        "last_error": state.last_error,
        "last_error_at": state.last_error_at,
        "last_success_at": state.last_success_at,
        "retry_at": state.retry_at,
        "outbox_depth": outbox.pending,
        "oldest_pending_at": outbox.oldest_pending_at,
        "tasks_created": outbox.tasks_created,
        "skipped_no_match": outbox.skipped_no_match,
        "group_send_drops_not_logged": gate.store.blocked_sends.count(workflow=Workflow.GROUP_SEND),
        "opt_outs_written": outbox.opt_outs_written,
        "failed": outbox.failed,
        "recent_failures": [{"id": e.id, "kind": e.kind, "recipient": e.recipient, "check_id": e.check_id,
                             "error": e.error, "at": e.done_at} for e in outbox.recent_failures],
    }
