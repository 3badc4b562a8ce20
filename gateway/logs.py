"""What the gate's log lines look like (LOG_FORMAT), and what they must never hold: secrets in the URLs that libraries log.

Here, not in gateway.api, so that the worker sets it up without loading the web app's parts.
"""
from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone

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


# --- how every line looks: LOG_FORMAT=json or text ------------------------------------------------------------


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def event_fields(record: logging.LogRecord) -> tuple[str, dict]:
    """An event's name and fields (gateway.events.emit); any other record is the event `log`."""
    event = getattr(record, "event", None)
    if event is not None:
        return event, dict(getattr(record, "fields", {}))
    fields = {"logger": record.name, "message": record.getMessage()}
    if record.exc_info:
        fields["exception"] = logging.Formatter().formatException(record.exc_info)
    return "log", fields


class JsonLines(logging.Formatter):
    """One JSON object per line: {"ts", "level", "event", "fields"}."""

    def format(self, record: logging.LogRecord) -> str:
        event, fields = event_fields(record)
        line = {"ts": _timestamp(record), "level": record.levelname.lower(), "event": event, "fields": fields}
        return json.dumps(line, default=str, separators=(",", ":"))


def _text_value(value) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    text = str(value)
    return text if text and not any(c in text for c in ' "=\n\t') else json.dumps(text)


class KeyValueText(logging.Formatter):
    """`<ts> <LEVEL> <event> key=value ...`; a record that is not an event keeps its prose after its logger's name."""

    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "event", None)
        if event is None:
            line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
            if record.exc_info:
                line += "\n" + self.formatException(record.exc_info)
            return line
        pairs = " ".join(f"{key}={_text_value(value)}" for key, value in getattr(record, "fields", {}).items())
        return f"{_timestamp(record)} {record.levelname} {event} {pairs}".rstrip()


LOG_FORMATTERS = {"json": JsonLines, "text": KeyValueText}
