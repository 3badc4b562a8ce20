"""Configuration from environment variables, Heroku-style.

Every setting has one name here; the rest of the gate reads `app.config["GATE"]`.
"""
from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

FAILURE_MODES = ("deny", "allow")
LOG_FORMATS = ("text", "json")
DEFAULT_RATE_LIMIT = "600 per minute"
MAX_EXPORT_JOBS = 10  # Marketo's bulk export queue, processing jobs included
MIRROR_LOAD_MODES = ("auto", "ids", "windows")  # GATEWAY_MIRROR_LOAD: how a load without a list runs


class ConfigError(ValueError):
    """The environment does not describe a gate that can run."""


@dataclass(frozen=True)
class ApiKeySpec:
    name: str
    role: str  # "caller" or "admin"
    key: str


@dataclass(frozen=True)
class GateConfig:
    database_url: str
    secret_key: str
    marketo_base_url: str | None = None
    marketo_client_id: str | None = None
    marketo_client_secret: str | None = None
    failure_mode: str = "deny"
    check_timeout: float = 3.0
    marketo_request_timeout: float = 2.0
    marketo_max_concurrency: int = 4
    cache_ttl: float = 60.0
    cache_max_entries: int = 100_000
    settings_cache_seconds: float = 1.0
    max_content_length: int = 1024 * 1024
    max_recipients: int = 10_000
    api_keys: tuple[ApiKeySpec, ...] = field(default_factory=tuple)
    # The mirror of Marketo's unsubscribes
    sync_interval: float = 30.0
    mirror_max_age: float = 600.0
    marketo_daily_budget: int = 2_500  # 5% of the usual 50,000 calls a day
    mirror_load_from: datetime = datetime(2006, 1, 1, tzinfo=timezone.utc)
    export_poll_seconds: float = 60.0
    sync_lease_seconds: float = 15.0  # renewed every third of it by a live worker
    marketo_probe_seconds: float = 60.0  # while Marketo fails: one probe this often, for all processes together
    export_jobs: int = 10  # export jobs the load keeps queued at once (Marketo: 10 queued, 2 processing)
    mirror_smart_list: str | None = None  # id or name of a smart list of the unsubscribed: a one-job load
    mirror_static_list: str | None = None  # the same, as a static list
    # Without a list: "auto" walks the lead ids when that costs fewer calls than the createdAt windows (and fits
    # the budget), "ids" always walks them, "windows" always exports the windows (gateway/mirror_load.py).
    mirror_load_mode: str = "auto"
    # Who gets in (gateway/api/security.py)
    cors_origins: tuple[str, ...] = ()  # exact origins of browser add-ins; none: no CORS headers at all
    rate_limit: str | None = DEFAULT_RATE_LIMIT  # per caller key, shared by all endpoints; None: off
    redis_url: str | None = None  # shared rate-limit counts; None: each process counts alone
    rate_limit_key_prefix: str = "gate"  # Redis key prefix (tests use one of their own)
    trust_proxy_hops: int = 0  # proxies whose X-Forwarded-For/-Proto are believed (Heroku's router: 1)
    # What operators see (gateway/logs.py, gateway/events.py, gateway/metrics.py, gateway/switch.py)
    log_format: str = "text"  # "json": one JSON object per line
    metrics_token: str | None = field(default=None, repr=False)  # a bearer token for GET /metrics besides admin keys
    switch_warning_seconds: float = 300.0  # how often a process logs `switch.off` while the check is off
    # The console's session cookie is `Secure` (HTTPS only) except in the demo, which serves plain HTTP locally.
    console_secure_cookies: bool = True
    # Salesforce (gateway/salesforce/): off unless the login URL and the client credentials are all set
    salesforce_login_url: str | None = None
    salesforce_client_id: str | None = None
    salesforce_client_secret: str | None = None
    salesforce_api_version: str = "62.0"
    salesforce_log_blocked_sends: bool = True
    salesforce_opt_out_writeback: bool = False

    @property
    def marketo_configured(self) -> bool:
        return bool(self.marketo_base_url and self.marketo_client_id and self.marketo_client_secret)

    @property
    def salesforce_configured(self) -> bool:
        return bool(self.salesforce_login_url and self.salesforce_client_id and self.salesforce_client_secret)


def normalize_database_url(url: str) -> str:
    """Accept Heroku's `postgres://` and plain `postgresql://`; the driver we ship is psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def parse_api_keys(raw: str) -> tuple[ApiKeySpec, ...]:
    specs = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        parts = item.split(":", 2)
        if len(parts) != 3 or not all(parts):
            raise ConfigError("GATEWAY_API_KEYS entries must look like name:role:key")
        name, role, key = parts
        if role not in ("caller", "admin"):
            raise ConfigError(f"GATEWAY_API_KEYS: role of {name!r} must be 'caller' or 'admin'")
        specs.append(ApiKeySpec(name=name, role=role, key=key))
    return tuple(specs)


def _number(env, name, default, kind=float, allow_zero=False):
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be positive")
    return value


def _date(env, name, default: datetime) -> datetime:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an ISO date such as 2015-01-01, got {raw!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _list_name(env, name) -> str | None:
    return (env.get(name) or "").strip() or None


def mirror_load_mode(env) -> str:
    mode = (env.get("GATEWAY_MIRROR_LOAD") or "auto").strip().lower()
    if mode not in MIRROR_LOAD_MODES:
        raise ConfigError(f"GATEWAY_MIRROR_LOAD must be one of {', '.join(MIRROR_LOAD_MODES)}, got {mode!r}")
    return mode


def export_jobs(env) -> int:
    jobs = _number(env, "GATEWAY_EXPORT_JOBS", 10, int)
    if jobs > MAX_EXPORT_JOBS:
        raise ConfigError(f"GATEWAY_EXPORT_JOBS must be at most {MAX_EXPORT_JOBS}: Marketo queues no more")
    return jobs


def _flag(env, name) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def database_url(env=None) -> str:
    """DATABASE_URL, or a SQLite file under ./instance (the app's root on Heroku and in a checkout)."""
    env = os.environ if env is None else env
    default = f"sqlite:///{Path('instance').absolute() / 'gateway.sqlite3'}"
    return normalize_database_url(env.get("DATABASE_URL") or default)


def parse_cors_origins(raw: str) -> tuple[str, ...]:
    """Exact origins (`https://addin.example.com`, `http://localhost:3000`): no wildcard, path or pattern."""
    origins = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        origin = item[:-1] if item.endswith("/") else item
        if not _is_origin(origin):
            raise ConfigError(f"GATEWAY_CORS_ORIGINS entries must be exact origins such as "
                              f"https://addin.example.com, got {item!r}")
        origins.append(origin.lower())
    return tuple(dict.fromkeys(origins))


CHROME_EXTENSION_ORIGIN = re.compile(r"chrome-extension://[a-p]{32}\Z", re.IGNORECASE)  # the Gmail kit's worker


def _is_origin(value: str) -> bool:
    if CHROME_EXTENSION_ORIGIN.match(value):
        return True
    parts = urlsplit(value)
    try:
        parts.port  # raises for a port that is not a number
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and bool(parts.hostname) and "*" not in value and "@" not in parts.netloc
            and not (parts.path or parts.query or parts.fragment))


def parse_rate_limit(raw: str | None) -> str | None:
    """The `limits` library's notation ("600 per minute", "10/second;600/minute"); "off" turns limits off."""
    raw = (raw or "").strip()
    if not raw:
        return DEFAULT_RATE_LIMIT
    if raw.lower() in ("off", "none"):
        return None
    from limits import parse_many

    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(f"GATEWAY_RATE_LIMIT must look like '600 per minute', got {raw!r}") from None
    return raw


def trust_proxy_hops(env) -> int:
    """GATEWAY_TRUST_PROXY: a flag or a number of proxies; unset, 1 on a Heroku dyno (DYNO is set) and 0 elsewhere."""
    raw = env.get("GATEWAY_TRUST_PROXY", "").strip().lower()
    if not raw:
        return 1 if env.get("DYNO") else 0
    if raw in ("true", "yes", "on"):
        return 1
    if raw in ("false", "no", "off"):
        return 0
    return _number(env, "GATEWAY_TRUST_PROXY", 0, int, allow_zero=True)


def redis_url(env) -> str | None:
    """REDIS_URL; on a dyno, Heroku Redis's `rediss://` URL, whose certificate is self-signed, is used unverified."""
    url = env.get("REDIS_URL") or None
    if url and env.get("DYNO") and url.startswith("rediss://") and "ssl_cert_reqs=" not in url:
        url += ("&" if "?" in url else "?") + "ssl_cert_reqs=none"
    return url


def log_format(env) -> str:
    value = (env.get("LOG_FORMAT") or "text").strip().lower()
    if value not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT must be 'json' or 'text', got {value!r}")
    return value


def _flag_default(env, name, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def salesforce_login_url(env) -> str | None:
    """SALESFORCE_LOGIN_URL: the org's My Domain; Salesforce is HTTPS only, so is this."""
    url = (env.get("SALESFORCE_LOGIN_URL") or "").strip().rstrip("/")
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(f"SALESFORCE_LOGIN_URL must be an https:// URL such as https://acme.my.salesforce.com, "
                          f"got {url!r}")
    return url


def salesforce_api_version(env) -> str:
    raw = (env.get("SALESFORCE_API_VERSION") or "62.0").strip().lstrip("vV")
    try:
        major, minor = raw.split(".")
        int(major), int(minor)
    except ValueError:
        raise ConfigError(f"SALESFORCE_API_VERSION must look like 62.0, got {raw!r}") from None
    return raw


def load_config(env=None) -> GateConfig:
    env = os.environ if env is None else env
    demo = _flag(env, "GATEWAY_DEMO")
    secret_key = env.get("SECRET_KEY")
    if not secret_key:
        if not demo:
            raise ConfigError("SECRET_KEY is required outside demo mode")
        secret_key = secrets.token_hex(32)
    failure_mode = env.get("GATEWAY_FAILURE_MODE", "deny").strip().lower()
    if failure_mode not in FAILURE_MODES:
        raise ConfigError("GATEWAY_FAILURE_MODE must be 'deny' or 'allow'")
    smart_list, static_list = _list_name(env, "GATEWAY_MIRROR_SMART_LIST"), _list_name(env, "GATEWAY_MIRROR_STATIC_LIST")
    if smart_list and static_list:
        raise ConfigError("set GATEWAY_MIRROR_SMART_LIST or GATEWAY_MIRROR_STATIC_LIST, not both")
    return GateConfig(
        database_url=database_url(env),
        secret_key=secret_key,
        marketo_base_url=(env.get("MARKETO_BASE_URL") or "").rstrip("/") or None,
        marketo_client_id=env.get("MARKETO_CLIENT_ID") or None,
        marketo_client_secret=env.get("MARKETO_CLIENT_SECRET") or None,
        failure_mode=failure_mode,
        check_timeout=_number(env, "GATEWAY_CHECK_TIMEOUT", 3.0),
        marketo_request_timeout=_number(env, "MARKETO_REQUEST_TIMEOUT", 2.0),
        marketo_max_concurrency=_number(env, "MARKETO_MAX_CONCURRENCY", 4, int),
        cache_ttl=_number(env, "GATEWAY_CACHE_TTL", 60.0),
        settings_cache_seconds=_number(env, "GATEWAY_SETTINGS_CACHE_SECONDS", 1.0, allow_zero=True),
        max_content_length=_number(env, "GATEWAY_MAX_BODY_BYTES", 1024 * 1024, int),
        max_recipients=_number(env, "GATEWAY_MAX_RECIPIENTS", 10_000, int),
        api_keys=parse_api_keys(env.get("GATEWAY_API_KEYS", "")),
        sync_interval=_number(env, "GATEWAY_SYNC_INTERVAL", 30.0),
        mirror_max_age=_number(env, "GATEWAY_MIRROR_MAX_AGE", 600.0),
        marketo_daily_budget=_number(env, "GATEWAY_MARKETO_DAILY_BUDGET", 2_500, int),
        mirror_load_from=_date(env, "GATEWAY_MIRROR_LOAD_FROM", datetime(2006, 1, 1, tzinfo=timezone.utc)),
        export_poll_seconds=_number(env, "GATEWAY_EXPORT_POLL_SECONDS", 60.0),
        sync_lease_seconds=_number(env, "GATEWAY_SYNC_LEASE_SECONDS", 15.0),
        marketo_probe_seconds=_number(env, "GATEWAY_MARKETO_PROBE_SECONDS", 60.0),
        export_jobs=export_jobs(env),
        mirror_smart_list=smart_list,
        mirror_static_list=static_list,
        mirror_load_mode=mirror_load_mode(env),
        cors_origins=parse_cors_origins(env.get("GATEWAY_CORS_ORIGINS", "")),
        rate_limit=parse_rate_limit(env.get("GATEWAY_RATE_LIMIT")),
        redis_url=redis_url(env),
        trust_proxy_hops=trust_proxy_hops(env),
        log_format=log_format(env),
        metrics_token=env.get("GATEWAY_METRICS_TOKEN") or None,
        switch_warning_seconds=_number(env, "GATEWAY_SWITCH_WARNING_SECONDS", 300.0),
        console_secure_cookies=not demo,
        salesforce_login_url=salesforce_login_url(env),
        salesforce_client_id=env.get("SALESFORCE_CLIENT_ID") or None,
        salesforce_client_secret=env.get("SALESFORCE_CLIENT_SECRET") or None,
        salesforce_api_version=salesforce_api_version(env),
        salesforce_log_blocked_sends=_flag_default(env, "SALESFORCE_LOG_BLOCKED_SENDS", True),
        salesforce_opt_out_writeback=_flag_default(env, "SALESFORCE_OPT_OUT_WRITEBACK", False),
    )
