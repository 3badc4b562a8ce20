"""The blocked-send log as CSV, for the admin API's `format=csv` and the console's export alike."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from gateway.store import LoggedBlockedSend
from schemas.admin import BlockedSendSchema

CSV_COLUMNS = ("at", "check_id", "source", "workflow", "sender", "recipient", "reason_code", "message_id")
FLUSH_BYTES = 64 * 1024

_row_schema = BlockedSendSchema()


def csv_cell(value) -> str:
    """Callers choose message ids and addresses; a spreadsheet must not run them as formulas."""
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def blocked_sends_csv(rows: Iterable[LoggedBlockedSend]) -> Iterator[str]:
    """The header, then the rows, in chunks of about FLUSH_BYTES: a large export streams."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(v) for k, v in _row_schema.dump(row).items()})
        if buffer.tell() > FLUSH_BYTES:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
