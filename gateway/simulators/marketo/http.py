"""What every Marketo endpoint of the simulator shares: the envelope, the order in which a REST
call is judged (``rest_endpoint``), request parameters, and Marketo's front door (414/413)."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from flask import Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES

from gateway.simulators.marketo.protocol import MAX_BATCH_SIZE, SimError

if TYPE_CHECKING:
    from gateway.simulators.marketo.limits import Admission, Fault
    from gateway.simulators.marketo.state import SimulatorState

MAX_URI_BYTES = 8192
MAX_BODY_BYTES = 1024 * 1024


def current_state() -> SimulatorState:
    return current_app.config["SIMULATOR_STATE"]


def envelope_error(state: SimulatorState, code: str, message: str | None = None) -> Response:
    state._count_error(code)
    return jsonify(
        {
            "requestId": state.request_id(),
            "success": False,
            "errors": [{"code": code, "message": message or state.error_message(code)}],
        }
    )


def bare_status(status: int) -> Response:
    reason = HTTP_STATUS_CODES.get(status, "Error")
    body = (
        f"<html><head><title>{status} {reason}</title></head>"
        f"<body><center><h1>{status} {reason}</h1></center><hr><center>nginx</center></body></html>\n"
    )
    return Response(body, status=status, mimetype="text/html")


def sleep_through_latency(admission: Admission) -> None:
    fault = admission.fault
    if fault is not None and fault.latency > 0 and admission.release is not None:
        admission.release.wait(fault.latency)


def fault_response(state: SimulatorState, fault: Fault | None) -> Response | None:
    if fault is None:
        return None
    if fault.http_status is not None:
        state._count_error(fault.http_status)
        return bare_status(fault.http_status)
    if fault.code is not None:
        return envelope_error(state, fault.code)
    return None


def bearer_token() -> str | None:
    # The access_token query parameter was removed: only the header counts.
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


RestView = Callable[..., "dict[str, Any] | Response"]


def rest_endpoint(name: str) -> Callable[[RestView], Callable[..., Response]]:
    """Wrap a REST view: limits, faults, auth, envelope; ``name`` is its kind in stats.

    The view returns the envelope's extra keys (``result`` and optionally
    ``nextPageToken``, ``moreResult``, …), a finished Response (a file), or raises
    SimError.
    """

    def decorate(view: RestView) -> Callable[..., Response]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            state = current_state()
            admission = state._admit_rest(name)
            if admission.reject:
                return envelope_error(state, admission.reject)
            try:
                sleep_through_latency(admission)
                faulted = fault_response(state, admission.fault)
                if faulted is not None:
                    return faulted
                auth_error = state.check_token(bearer_token())
                if auth_error:
                    return envelope_error(state, auth_error)
                try:
                    payload = view(*args, **kwargs)
                except SimError as err:
                    return envelope_error(state, err.code, err.message)
                if isinstance(payload, Response):
                    return payload
                body = {"requestId": state.request_id(), "success": True}
                body.update(payload)
                return jsonify(body)
            finally:
                state._leave()

        return wrapper

    return decorate


def split_values(value: str | None) -> list[str]:
    if not value:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def batch_size_param(raw: str | None) -> int:
    if raw in (None, ""):
        return MAX_BATCH_SIZE
    try:
        batch_size = int(raw)
    except ValueError:
        raise SimError("1003", f"Invalid batchSize '{raw}'") from None
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise SimError("1003", f"Invalid batchSize {batch_size} (1 to {MAX_BATCH_SIZE})")
    return batch_size


def _raw_uri() -> str:
    """Path and query as the client sent them (RAW_URI from the HTTP server; the
    test client may leave the query out of it)."""
    env = request.environ
    qs = env.get("QUERY_STRING", "")
    raw = env.get("RAW_URI") or env.get("REQUEST_URI")
    if not raw:
        raw = quote(env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", ""), safe="/:@!$&'()*+,;=-._~")
    if qs and "?" not in raw:
        raw = f"{raw}?{qs}"
    return raw


def _is_marketo_path(path: str) -> bool:
    return not path.startswith("/_sim/") and path != "/_sim"


def front_door() -> Response | None:
    """What Marketo's front end refuses before the API sees the request."""
    if not _is_marketo_path(request.path):
        return None
    state = current_state()
    if len(_raw_uri().encode("latin-1", "replace")) > MAX_URI_BYTES:
        state._count_http_reject(414)
        return bare_status(414)
    request.max_form_memory_size = MAX_BODY_BYTES
    too_large = False
    if request.content_length is not None:
        too_large = request.content_length > MAX_BODY_BYTES
    elif request.environ.get("wsgi.input_terminated"):
        # A chunked body: read (and cache) one byte past the limit to tell.
        request.max_content_length = MAX_BODY_BYTES + 1
        too_large = len(request.get_data(cache=True)) > MAX_BODY_BYTES
    if too_large:
        state._count_http_reject(413)
        return bare_status(413)
    return None


def too_large(_err: RequestEntityTooLarge) -> Response:
    # Werkzeug refused a body or form part past its limits.
    current_state()._count_http_reject(413)
    return bare_status(413)
