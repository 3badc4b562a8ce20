"""Marketo Engage: what the gate uses of it (interfaces.py) and the REST client (its simulator is
gateway.simulators.marketo).

This package knows Marketo's protocol and nothing of the gate's decisions or
of HTTP requests made to the gate.
"""
from gateway.marketo.errors import (
    MarketoAuthError,
    MarketoBudgetExhausted,
    MarketoCircuitOpen,
    MarketoConfigError,
    MarketoError,
    MarketoNotConfigured,
    MarketoQuotaExceeded,
    MarketoRequestError,
    MarketoUnavailable,
)

__all__ = [
    "MarketoAuthError",
    "MarketoBudgetExhausted",
    "MarketoCircuitOpen",
    "MarketoConfigError",
    "MarketoError",
    "MarketoNotConfigured",
    "MarketoQuotaExceeded",
    "MarketoRequestError",
    "MarketoUnavailable",
]
