"""What can go wrong talking to Salesforce, told in Salesforce's own words (`str(error)`)."""
from __future__ import annotations


class SalesforceError(Exception):
    """Salesforce did not do what was asked; `temporary` says whether trying again later may help."""

    temporary = False


class SalesforceUnavailable(SalesforceError):
    """503, a network error, a timeout or REQUEST_LIMIT_EXCEEDED: back off and try again later."""

    temporary = True

    def __init__(self, message: str, *, maybe_processed: bool = False):
        super().__init__(message)
        # True when the request may have reached Salesforce and only the answer was lost (a read timeout)
        self.maybe_processed = maybe_processed


class SalesforceAuthError(SalesforceError):
    """The token request was refused (bad client id or secret, flow not enabled): an admin has to act."""


class SalesforceRequestError(SalesforceError):
    """Salesforce refused the request itself (a 4xx other than the ones above)."""


class SalesforceNotConfigured(SalesforceError):
    """SALESFORCE_LOGIN_URL, SALESFORCE_CLIENT_ID or SALESFORCE_CLIENT_SECRET is unset."""
