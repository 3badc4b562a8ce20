"""gunicorn settings, read from the environment Heroku-style (gunicorn loads this file from the app root)."""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

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


# Set by on_starting when it made the metrics directory itself (PROMETHEUS_MULTIPROC_DIR unset): removed on exit.
made_metrics_dir = None


def on_starting(server):
    """Refuse a configuration the gate cannot run with, in one line (not a traceback from every worker); and
    since the embedded SQLite default needs no release phase, migrate it once, before workers fork.

    `gateway prepare` does both in a child process: importing the gate here would import requests and ssl
    into the master before each gevent worker patches them (gevent's MonkeyPatchWarning, and TLS calls to
    Marketo on unpatched sockets)."""
    prepare_metrics_dir()  # before the gate, and so prometheus-client, is imported
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "prepare"], stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        on_exit(server)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        message = lines[-1].removeprefix("Error: ") if lines else f"gateway prepare exited {result.returncode}"
        raise RuntimeError(message) from None  # gunicorn prints "Error: ..." and exits 1


def prepare_metrics_dir():
    """/metrics adds up every worker's counters: prometheus-client keeps them in files in PROMETHEUS_MULTIPROC_DIR,
    read when it is imported. Set it to choose the directory, else a new one is made. Its counts of an earlier run
    are deleted, so they are not added in (only prometheus-client's own files: it may be a directory you chose)."""
    global made_metrics_dir
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = made_metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    os.makedirs(path, exist_ok=True)
    for name in glob.glob(os.path.join(path, "*.db")):
        os.remove(name)


def post_worker_init(worker):
    """Each web worker says, at start and every few minutes, when the check is off (gateway/switch.py)."""
    from gateway.switch import watch_switch

    gate = getattr(worker.wsgi, "extensions", {}).get("gate")
    if gate is not None:  # bench/bare_app.py runs under this file too, and is no gate
        watch_switch(gate, "web")


def child_exit(server, worker):
    """A worker that ended: its live gauges go, its counters stay in the sum (prometheus-client's multiprocess mode)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """The metrics directory on_starting made goes with gunicorn; one an operator chose stays."""
    if made_metrics_dir:
        shutil.rmtree(made_metrics_dir, ignore_errors=True)
