"""Why Marketo could not answer. Every failure of the client is one of these."""


class MarketoError(Exception):
    """Marketo could not answer. `code` is Marketo's error code when it gave one."""

    retryable = False

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code


class MarketoUnavailable(MarketoError):
    """Timeouts, network errors, 5xx, 604/608/611/713, 606/615 that outlasted the deadline."""

    retryable = True


class MarketoQuotaExceeded(MarketoError):
    """607: the instance's daily quota is used up; no calls until the reset."""


class MarketoAuthError(MarketoError):
    """The identity service refused the client id / secret."""


class MarketoConfigError(MarketoError):
    """603 access denied, or Marketo is not configured at all."""


class MarketoNotConfigured(MarketoConfigError):
    """The gate has no Marketo to call (interfaces.UnconfiguredMarketo); its message says what to set."""


class MarketoRequestError(MarketoError):
    """609/610/612/1003 and other errors that mean the request itself was wrong."""


class MarketoBudgetExhausted(MarketoError):
    """The gate's own daily call budget is spent; it stops calling so the marketing team keeps its quota."""


class MarketoCircuitOpen(MarketoUnavailable):
    """Marketo kept failing, so the circuit breaker did not send the request (marketo/breaker.py)."""
