"""Flask's cookie sessions, without their cost on requests that carry no session cookie (every API call).

Flask builds an itsdangerous signer on every request before it even looks for the cookie: about a tenth of
a mirror-answered check. This looks for a Cookie header first; with one it is Flask's own code, unchanged.
"""
from __future__ import annotations

from flask.sessions import SecureCookieSessionInterface


class CookieSessions(SecureCookieSessionInterface):
    def open_session(self, app, request):
        if app.secret_key and "HTTP_COOKIE" not in request.environ:
            return self.session_class()  # what Flask returns when there is no cookie, signer or not
        return super().open_session(app, request)
