"""What the gate's logs must never hold: secrets in the URLs that libraries log.

Here, not in gateway.api, so that the worker sets it up without loading the web app's parts.
"""
from __future__ import annotations

import logging
import re

SECRET_IN_URL = re.compile(r"((?:client_secret|access_token)=)[^&\s\"']+", re.IGNORECASE)
BEARER_TOKEN = re.compile(r"(Bearer\s+)[^\s\"',]+", re.IGNORECASE)  # Salesforce's tokens travel in this header


class RedactSecrets(logging.Filter):
    """urllib3 logs each request line at DEBUG, and Marketo's identity call carries the client secret in its
    query string: the secret (and any access_token) is replaced before the record reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = BEARER_TOKEN.sub(r"\1[redacted]", SECRET_IN_URL.sub(r"\1[redacted]", message))
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_secrets_in_logs() -> None:
    """Idempotent; called wherever a Marketo client is built (the web app and the worker)."""
    for name in ("urllib3.connectionpool", "simple_salesforce"):
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactSecrets) for existing in logger.filters):
            logger.addFilter(RedactSecrets())
