"""gunicorn settings, read from the environment Heroku-style (gunicorn loads this file from the app root)."""
import glob
import os
import shutil
import tempfile

# /metrics adds up every worker's counters: prometheus-client keeps them in files in this directory, and must be
# told so before it is imported (the app is imported after this file). Set it to choose the directory; it is
# emptied when gunicorn starts, so counts of an earlier run are not added in.
MADE_METRICS_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if MADE_METRICS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gateway-metrics-")

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
    empty_metrics_dir(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def empty_metrics_dir(path):
    """Only prometheus-client's own files go: the directory may be one an operator chose."""
    os.makedirs(path, exist_ok=True)
    for name in glob.glob(os.path.join(path, "*.db")):
        os.remove(name)


def post_worker_init(worker):
    """Each web worker says, at start and every few minutes, when the check is off (gateway/switch.py)."""
    from gateway.switch import watch_switch

    watch_switch(worker.wsgi.extensions["gate"], "web")


def child_exit(server, worker):
    """A worker that ended: its live gauges go, its counters stay in the sum (prometheus-client's multiprocess mode)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """The directory made above goes with gunicorn; one an operator chose stays."""
    if MADE_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
