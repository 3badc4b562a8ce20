"""Authentication: access tokens (one per client, reused until it expires) and
``/identity/oauth/token``."""
from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable

from flask import Response, jsonify, request

from gateway.simulators.marketo.http import current_state, fault_response, sleep_through_latency


class TokensMixin:
    """The access tokens of ``SimulatorState``."""

    _lock: threading.Lock
    clock: Callable[[], float]
    client_id: str
    client_secret: str
    token_ttl: int

    def _reset_tokens_locked(self) -> None:
        self._tokens: dict[str, float] = {}  # token -> expiry on self.clock
        self._current_token: str | None = None

    def issue_token(self, client_id: str | None, client_secret: str | None) -> tuple[str, int] | None:
        """The current token and its remaining seconds, or None for bad credentials."""
        if not (
            client_id is not None
            and client_secret is not None
            and secrets.compare_digest(client_id.encode(), self.client_id.encode())
            and secrets.compare_digest(client_secret.encode(), self.client_secret.encode())
        ):
            return None
        with self._lock:
            now = self.clock()
            token = self._current_token
            if token is None or self._tokens[token] <= now:
                token = f"{uuid.uuid4()}:ab"
                self._tokens[token] = now + self.token_ttl
                self._current_token = token
            return token, max(0, int(self._tokens[token] - now))

    def check_token(self, token: str | None) -> str | None:
        """None if the token is good, else the Marketo error code (600/601/602)."""
        if not token:
            return "600"
        with self._lock:
            expires = self._tokens.get(token)
            if expires is None:
                return "601"
            if expires <= self.clock():
                return "602"
            return None

    def expire_tokens(self) -> int:
        """Make every issued token expired now. Returns how many were still valid."""
        with self._lock:
            now = self.clock()
            live = [t for t, exp in self._tokens.items() if exp > now]
            for t in live:
                self._tokens[t] = now
            return len(live)


def token_view() -> Response:
    state = current_state()
    admission = state._admit_identity()
    sleep_through_latency(admission)
    faulted = fault_response(state, admission.fault)
    if faulted is not None:
        return faulted
    if request.args.get("grant_type") != "client_credentials":
        state._count_error(400)
        return jsonify(
            {"error": "unsupported_grant_type", "error_description": "Unsupported grant type"}
        ), 400
    issued = state.issue_token(request.args.get("client_id"), request.args.get("client_secret"))
    if issued is None:
        state._count_error(401)
        return jsonify({"error": "invalid_client", "error_description": "Bad client credentials"}), 401
    token, expires_in = issued
    return jsonify(
        {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": expires_in,
            "scope": "apiuser@example.com",
        }
    )
