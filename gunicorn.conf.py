"""gunicorn settings, read from the environment Heroku-style (gunicorn loads this file from the app root)."""
import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads, so one caller waiting on a slow Marketo (up to the check deadline) does not hold a whole worker.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 30
graceful_timeout = 20
# Request lines only: bodies, and so addresses and subjects, are never in the access log.
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'


def on_starting(server):
    """The embedded SQLite default needs no release phase: migrate once, in the master, before workers fork."""
    from gateway.config import database_url
    from gateway.store.db import make_engine, upgrade

    url = database_url()
    if url.startswith("sqlite"):
        upgrade(make_engine(url))
