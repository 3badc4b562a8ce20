"""Request helpers every blueprint shares."""
from __future__ import annotations

import json

from flask import request

from gateway.api.errors import ApiError


def json_body():
    """The request's body as JSON: 415 unless it says application/json, 400 unless it parses."""
    current = request._get_current_object()  # one context lookup, not one per attribute (the check path)
    if current.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    try:
        return json.loads(current.get_data(cache=True))
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "The body is not valid JSON.") from None
