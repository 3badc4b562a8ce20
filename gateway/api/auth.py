"""Who is calling: `Authorization: Bearer <key>`, from GATEWAY_API_KEYS or a key made by the CLI.

A stored key may be limited to some sources, and may require every request to be signed (see signatures.py).
"""
from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache, partial, wraps

from flask import current_app, g, request
from sqlalchemy.exc import SQLAlchemyError

from gateway.api.errors import ApiError
from gateway.api.replay import deliver_once
from gateway.api.signatures import verify_request
from gateway.store import hash_key, utcnow

log = logging.getLogger(__name__)

ROLES_ALLOWED = {"caller": ("caller", "admin"), "admin": ("admin",)}
LAST_USED_RESOLUTION = timedelta(minutes=1)  # don't write on every request just to say "used now"


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    key_id: int | None = None  # stored keys only
    sources: tuple[str, ...] | None = None  # None: any source (always so for GATEWAY_API_KEYS)
    require_signature: bool = False
    signing_secret: str | None = field(default=None, repr=False)
    touch_due: bool = field(default=False, compare=False)  # last_used_at is older than LAST_USED_RESOLUTION


def bearer_key() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


def request_caller(request_g=None) -> tuple[str | None, Principal | None]:
    """This request's bearer key and who holds it: (None, None) without a key, (key, None) for a key not known.

    The rate limiter asks before the view and `require` in it; the key is looked up once per request. A
    database error is not remembered: the next to ask meets it again. `request_g`: `g`, when the caller has it.
    """
    request_g = request_g if request_g is not None else g._get_current_object()
    remembered = request_g.get("_caller")
    if remembered is None:
        key = bearer_key()
        remembered = (key, None if key is None else authenticate(key))
        request_g._caller = remembered
    return remembered


def authenticate(key: str) -> Principal | None:
    """Who holds this key, asked of the configured keys and then the stored ones."""
    gate = current_app.extensions["gate"]
    matched = None
    given = key.encode()
    # Compare with every configured key so the time taken says nothing about which one nearly matched.
    for spec in gate.config.api_keys:
        if hmac.compare_digest(spec.key.encode(), given):
            matched = spec
    if matched:
        return _configured_principal(matched.name, matched.role)
    stored = gate.store.keys.by_hash(hash_key(key))
    if stored is None:
        return None
    return Principal(
        stored.name, stored.role, key_id=stored.id, sources=stored.sources,
        require_signature=stored.require_signature, signing_secret=stored.signing_secret,
        touch_due=stored.last_used_at is None or utcnow() - stored.last_used_at > LAST_USED_RESOLUTION,
    )


@cache
def _configured_principal(name: str, role: str) -> Principal:
    """A GATEWAY_API_KEYS key's holder: the same for every request, so made once per process."""
    return Principal(name, role)


def authorize_source(source: str) -> None:
    """After the body is read: a key limited to some sources may check only for those, each at its endpoint."""
    request_g = g._get_current_object()
    principal: Principal = request_g.principal
    if principal.sources is None:
        return
    if source not in principal.sources or source not in (request_g.get("endpoint_sources") or ()):
        raise ApiError(403, "forbidden", f"This key may not check sends from {source!r} here; it is limited to "
                                         f"{', '.join(principal.sources)}.")


def require(role: str, *, sources: tuple[str, ...] | None = None):
    """`sources`: on a callout endpoint, the sources it serves (the contract's table of callers).

    Each request goes through the steps in order, any of which may refuse it: the key is known, its role
    may call here, its sources are served here, its signature holds (keys that require one), and on a
    callout endpoint a signed webhook-id is answered once (replay.deliver_once). The key's use is recorded
    after the answer.
    """

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            request_g = g._get_current_object()
            principal = _caller(request_g)
            _check_role(principal, role)
            _check_endpoint(principal, sources)
            webhook_id = verify_request(principal.signing_secret) if principal.require_signature else None
            request_g.principal = principal
            request_g.endpoint_sources = sources
            answer = partial(view, *args, **kwargs)
            if webhook_id is not None and sources is not None:
                response = deliver_once(principal.key_id, webhook_id, answer)
            else:
                response = answer()
            _touch(principal)
            return response

        return wrapped

    return decorator


def _caller(request_g) -> Principal:
    key, principal = request_caller(request_g)
    if key is None:
        raise ApiError(401, "unauthorized", "Send your gate key as `Authorization: Bearer <key>`.",
                       headers={"WWW-Authenticate": "Bearer"})
    if principal is None:
        raise ApiError(401, "unauthorized", "That key is not known to this gate.",
                       headers={"WWW-Authenticate": "Bearer"})
    return principal


def _check_role(principal: Principal, role: str) -> None:
    if principal.role not in ROLES_ALLOWED[role]:
        raise ApiError(403, "forbidden", "Administrator permission required." if role == "admin"
                       else "This key may not call this endpoint.")


def _check_endpoint(principal: Principal, sources: tuple[str, ...] | None) -> None:
    """Before the body is read: a key limited to some sources may call only endpoints serving one of them."""
    if principal.sources is not None and not set(principal.sources) & set(sources or ()):
        raise ApiError(403, "forbidden", f"This key may not call this endpoint; it is limited to "
                                         f"{', '.join(principal.sources)}.")


def _touch(principal: Principal) -> None:
    """Record the key's use once it was let in and answered; a failure here must not fail the answer."""
    if principal.key_id is None or not principal.touch_due:
        return
    try:
        current_app.extensions["gate"].store.keys.touch(principal.key_id)
    except SQLAlchemyError:
        log.warning("could not record the last use of key %r", principal.name)
