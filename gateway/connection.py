"""The Marketo connection as the admin sees it: tested on demand, described in words, remembered in the settings.

The admin API tests it before it shows the settings or turns the check on; the console will do the same. The
resolution chain (gateway.checks) keeps it true between tests with the lasting failures it meets.
"""
from __future__ import annotations

from gateway.marketo import (
    MarketoAuthError,
    MarketoBudgetExhausted,
    MarketoConfigError,
    MarketoError,
    MarketoNotConfigured,
    MarketoQuotaExceeded,
)
from gateway.marketo.interfaces import MarketoService
from gateway.store import Store

CONNECTED_MESSAGE = "Connected to Marketo."


def check_marketo_connection(marketo: MarketoService, store: Store, *, timeout: float) -> tuple[bool, str]:
    """Ask Marketo for a token and one lookup; remember the outcome for the settings page."""
    try:
        marketo.check_connection(timeout=timeout)
        connected, message = True, CONNECTED_MESSAGE
    except MarketoError as error:
        connected, message = False, describe_marketo_error(error)
    store.settings.record_marketo_status(connected, message)
    return connected, message


def describe_marketo_error(error: MarketoError) -> str:
    if isinstance(error, MarketoNotConfigured):
        return error.message  # it names the settings to set
    if isinstance(error, MarketoAuthError):
        return f"Marketo refused the client id and secret: {error.message}"
    if isinstance(error, MarketoConfigError):
        return f"Marketo denied access (check the API user's permissions and IP allow-list): {error.message}"
    if isinstance(error, MarketoQuotaExceeded):
        return f"Marketo's daily API quota is used up: {error.message}"
    if isinstance(error, MarketoBudgetExhausted):
        return f"The gate stopped calling Marketo: {error.message}"
    return f"Marketo did not answer: {error.message}"
