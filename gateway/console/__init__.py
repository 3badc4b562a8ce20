"""The admin console: server-rendered pages for people, on the same services as the admin API.

    /console/sign-in            sign in with an account made by `gateway admins create`
    /console/integrations       the Marketo connection and its test, the check switch, the failure policy, Salesforce
    /console/mirror             the mirror: mode, size, sync, the first load's progress, Marketo calls against the budget
    /console/blocked-sends      the log, filtered, paged, charted per day, exported as CSV
    /console/check              what the gate would answer for some addresses, logging nothing
    /console/audit              every change of a setting, by the console or the admin API

Only a signed-in session opens these pages; API keys of any role do not. The session is Flask's cookie,
signed with SECRET_KEY, `Secure`, `HttpOnly` and `SameSite=Lax`, and it ends after a day without a request.
Every form that changes something carries a CSRF token (Flask-WTF), checked before the view runs.
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, redirect, render_template, request, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFError, CSRFProtect

from gateway.config import GateConfig
from gateway.console.accounts import ConsoleUser

IDLE_TIMEOUT = timedelta(days=1)
# Scripts: none at all. Styles and images: this site's own files only. Forms post only back here.
CONSOLE_CSP = ("default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self'; "
               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
# The gate says `no-referrer` everywhere; the console must send its own origin as the Referer, because
# Flask-WTF refuses a form posted over HTTPS without a same-origin Referer (WTF_CSRF_SSL_STRICT).
CONSOLE_REFERRER_POLICY = "same-origin"

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static", static_url_path="/static")
csrf = CSRFProtect()
login_manager = LoginManager()
OPEN_ENDPOINTS = {"console.sign_in", "console.static"}


class ConsoleOnlySessions(SecureCookieSessionInterface):
    """Only the console has sessions. Everything else takes no cookies, so its answers never carry a cookie or
    `Vary: Cookie` (which Flask-Login's after-request hook would otherwise add by looking into the session)."""

    def open_session(self, app, request):
        if not request.path.startswith(bp.url_prefix + "/"):
            return self.make_null_session(app)
        return super().open_session(app, request)


def init_app(app: Flask, config: GateConfig) -> None:
    app.session_interface = ConsoleOnlySessions()
    app.config.update(
        SESSION_COOKIE_NAME="gate_console",
        SESSION_COOKIE_SECURE=config.console_secure_cookies,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=IDLE_TIMEOUT,  # checked on every request by the cookie's signed timestamp
        SESSION_REFRESH_EACH_REQUEST=True,  # so it is a day *idle*, not a day after signing in
        WTF_CSRF_CHECK_DEFAULT=False,  # only the console's views are checked: the API takes no cookies
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
    )
    with _console_scoped_hooks(app):
        csrf.init_app(app)
        login_manager.init_app(app)
    login_manager.login_view = "console.sign_in"
    login_manager.login_message = "Sign in to open the console."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"
    app.register_blueprint(bp)
    app.register_error_handler(CSRFError, _csrf_refused)


@contextmanager
def _console_scoped_hooks(app: Flask):
    """The request hooks that extensions set up inside the block add to every request run on the console's only.

    Flask-WTF's check (a no-op here: WTF_CSRF_CHECK_DEFAULT is off, `_guard` checks the console's forms) and
    Flask-Login's remember-cookie update matter only where there are sessions, and only the console has them;
    Flask calls every app-wide hook on every API request, a cost on the check path for nothing.
    """
    app_wide = [(hooks, list(hooks.get(None, ()))) for hooks in (app.before_request_funcs, app.after_request_funcs)]
    yield
    for hooks, before in app_wide:
        added = [hook for hook in hooks.get(None, ()) if hook not in before]
        hooks[None] = before
        hooks.setdefault(bp.name, []).extend(added)


@login_manager.user_loader
def _load_user(user_id: str) -> ConsoleUser | None:
    if not user_id.isdigit():
        return None
    admin = current_app.extensions["gate"].store.admins.by_id(int(user_id))
    return ConsoleUser(admin) if admin else None


@bp.before_request
def _guard():
    if request.method == "POST":
        csrf.protect()
    if request.endpoint not in OPEN_ENDPOINTS and not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


@bp.after_request
def _page_headers(response):
    response.headers["Content-Security-Policy"] = CONSOLE_CSP
    response.headers["Referrer-Policy"] = CONSOLE_REFERRER_POLICY
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.context_processor
def _every_page():
    """What the layout shows on every page: the banner while the check is off, and who is signed in."""
    if not current_user.is_authenticated:
        return {"check_enabled": True}
    settings = current_app.extensions["gate"].store.settings.get()
    return {"check_enabled": settings.marketo_check_enabled}


def _csrf_refused(error: CSRFError):
    # Raised only by the console's views (csrf.protect in _guard): its headers are added by _page_headers.
    return render_template("console/refused.html", title="Form refused", reason=error.description), 400


@bp.app_template_filter("console_time")
def console_time(value) -> str:
    """An instant as people read it: `27 Nov 2026, 04:10 UTC` (the gate keeps and shows UTC)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return f"{moment:%d %b %Y, %H:%M} UTC"


@bp.app_template_filter("duration")
def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days {hours % 24} h"


def local_target(target: str | None) -> str:
    """Where to go after signing in: a console path on this site, never another site."""
    default = url_for("console.integrations")
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console/") or "\\" in target:
        return default
    return target


def redirect_to(endpoint: str, **values):
    return redirect(url_for(endpoint, **values), code=303)


from gateway.console import blocked, pages, signin  # noqa: E402,F401  (the views register on bp)
