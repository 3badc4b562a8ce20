"""Who is calling: `Authorization: Bearer <key>`, from GATEWAY_API_KEYS or a key made by the CLI."""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps

from flask import current_app, g, request

from gateway.api.errors import ApiError
from gateway.store import hash_key, utcnow

ROLES_ALLOWED = {"caller": ("caller", "admin"), "admin": ("admin",)}
LAST_USED_RESOLUTION = timedelta(minutes=1)  # don't write on every request just to say "used now"


@dataclass(frozen=True)
class Principal:
    name: str
    role: str


def bearer_key() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


def authenticate(key: str) -> Principal | None:
    gate = current_app.extensions["gate"]
    matched = None
    # Compare with every configured key so the time taken says nothing about which one nearly matched.
    for spec in gate.config.api_keys:
        if hmac.compare_digest(spec.key.encode(), key.encode()):
            matched = Principal(spec.name, spec.role)
    if matched:
        return matched
    stored = gate.store.key_by_hash(hash_key(key))
    if stored is None:
        return None
    if stored.last_used_at is None or utcnow() - stored.last_used_at > LAST_USED_RESOLUTION:
        gate.store.touch_key(stored.id)
    return Principal(stored.name, stored.role)


def require(role: str):
    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            key = bearer_key()
            if key is None:
                raise ApiError(401, "unauthorized", "Send your gate key as `Authorization: Bearer <key>`.",
                               headers={"WWW-Authenticate": "Bearer"})
            principal = authenticate(key)
            if principal is None:
                raise ApiError(401, "unauthorized", "That key is not known to this gate.",
                               headers={"WWW-Authenticate": "Bearer"})
            if principal.role not in ROLES_ALLOWED[role]:
                raise ApiError(403, "forbidden", "Administrator permission required." if role == "admin"
                               else "This key may not call this endpoint.")
            g.principal = principal
            return view(*args, **kwargs)

        return wrapped

    return decorator
