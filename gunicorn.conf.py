"""gunicorn settings, read from the environment Heroku-style (gunicorn loads this file from the app root)."""
import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# gevent, not threads: a connection is a greenlet, so neither a caller waiting on a slow Marketo (up to the
# check deadline) nor a client trickling its headers or body holds one of a few threads while others queue.
# Heroku's router does not buffer request bodies, so this is the gate's defence against slow clients; the
# request's deadline counts from the router's X-Request-Start either way (gateway/api/deadline.py).
worker_class = "gevent"
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "200"))
timeout = 30
graceful_timeout = 20
# Request lines only: bodies, and so addresses and subjects, are never in the access log.
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'


def on_starting(server):
    """Refuse a configuration the gate cannot run with, in one line (not a traceback from every worker); and
    since the embedded SQLite default needs no release phase, migrate it once, in the master, before workers fork."""
    from gateway.config import ConfigError, database_url, load_config
    from gateway.store.db import make_engine, upgrade

    try:
        load_config()
    except ConfigError as error:
        raise RuntimeError(f"configuration: {error}") from None  # gunicorn prints "Error: ..." and exits 1
    url = database_url()
    if url.startswith("sqlite"):
        upgrade(make_engine(url))
