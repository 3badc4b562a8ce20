"""`gateway demo`: the gate, seeded Marketo and Salesforce simulators and the sync on this machine, stopped
as a whole by SIGTERM or SIGINT."""
from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
import requests

from gateway.store import Store
from gateway.store.db import make_engine, upgrade

DEMO_CALLER_KEY = "demo-caller-key"
DEMO_ADMIN_KEY = "demo-admin-key"
DEMO_CONSOLE_ADMIN = ("demo", "demo-console-password")  # the console's sign-in in the demo only


def _wait_until_up(url: str, process: subprocess.Popen, deadline_seconds: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise click.ClickException(f"{process.args[0]} exited with {process.returncode} while starting")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)  # polling a starting server; bounded by the deadline
    raise click.ClickException(f"{url} did not come up within {deadline_seconds:.0f} s")


DEMO_SALESFORCE_CONTACTS = ("jane@example.com", "unsub@example.com", "dup@example.com")
DEMO_SALESFORCE_USER = "005xx0000012345"  # the userId of the Salesforce example below: the Tasks' owner


def _wait_for_file(path: Path, process: subprocess.Popen, deadline_seconds: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_seconds
    while not path.exists():
        if process.poll() is not None:
            raise click.ClickException(f"{process.args[0]} exited with {process.returncode} while starting")
        if time.monotonic() > deadline:
            raise click.ClickException(f"{path} was not written within {deadline_seconds:.0f} s")
        time.sleep(0.1)  # polling a starting server; bounded by the deadline


def _curl_examples(base: str) -> str:
    caller = f"-H 'Authorization: Bearer {DEMO_CALLER_KEY}' -H 'Content-Type: application/json'"
    admin = f"-H 'Authorization: Bearer {DEMO_ADMIN_KEY}'"
    checks = '{"source":"web","workflow":"multi_select_send","sender":"rep@acme.example","messages":[{"id":"msg-1","recipients":[{"email":"jane@example.com","type":"to"}]},{"id":"msg-2","recipients":[{"email":"Bob <bob@example.com>","type":"cc"}]}]}'
    salesforce = '{"workflow":"single_send","userId":"005xx0000012345","records":[{"attributes":{"type":"EmailMessage","url":"/services/data/v62.0/sobjects/EmailMessage/02s000000000001"},"Id":"02s000000000001","ToAddress":"alice@example.com; unsub@example.com","CcAddress":null,"FromAddress":"rep@acme.example","Subject":"Hello"}]}'
    email_client = '{"client":"outlook","sender":"rep@acme.example","to":[{"emailAddress":"jane@example.com","displayName":"Jane"}],"cc":["bob@example.com"],"bcc":[],"subject":"Hello"}'
    return "\n".join(
        [
            "Try it (jane@, unsub@ and dup@example.com unsubscribed; bob@ and alice@ subscribed):",
            f"  curl -s {caller} -d {shlex.quote(checks)} {base}/v1/checks",
            f"  curl -s {caller} -d {shlex.quote(salesforce)} {base}/v1/hooks/salesforce",
            f"  curl -s {caller} -d {shlex.quote(email_client)} {base}/v1/hooks/email-client",
            f"  curl -s {admin} {base}/v1/admin/settings",
            f"  curl -s {admin} '{base}/v1/admin/blocked-sends?limit=20'",
        ]
    )


def _salesforce_examples(base: str, salesforce_url: str, ca_path: Path) -> str:
    admin = f"-H 'Authorization: Bearer {DEMO_ADMIN_KEY}'"
    return "\n".join([
        "Blocked sends become Tasks in the Salesforce simulator (HTTPS, its own CA) within one worker round (~10 s):",
        f"  curl -s --cacert {shlex.quote(str(ca_path))} {salesforce_url}/_sim/tasks",
        f"  curl -s {admin} {base}/v1/admin/status      # the \"salesforce\" object: outbox, Tasks created, errors",
    ])


def run_demo(port: int, marketo_port: int, salesforce_port: int, host: str) -> None:
    marketo_url = f"http://127.0.0.1:{marketo_port}"
    salesforce_url = f"https://127.0.0.1:{salesforce_port}"
    salesforce_ca = Path("instance").absolute() / "salesforce-sim-ca.pem"
    env = {
        **os.environ,
        "GATEWAY_DEMO": "1",
        "MARKETO_BASE_URL": marketo_url,
        "MARKETO_CLIENT_ID": "sim-client",
        "MARKETO_CLIENT_SECRET": "sim-secret",
        "GATEWAY_API_KEYS": f"demo-caller:caller:{DEMO_CALLER_KEY},demo-admin:admin:{DEMO_ADMIN_KEY}",
        "DATABASE_URL": os.environ.get("DATABASE_URL") or f"sqlite:///{Path('instance').absolute() / 'demo.sqlite3'}",
        # The simulator's leads are all recent, and it finishes exports at once: a quick full load.
        "GATEWAY_MIRROR_LOAD_FROM": (datetime.now(timezone.utc) - timedelta(days=2)).date().isoformat(),
        "GATEWAY_EXPORT_POLL_SECONDS": "1",
        "GATEWAY_SYNC_INTERVAL": os.environ.get("GATEWAY_SYNC_INTERVAL", "10"),
        "GATEWAY_MARKETO_DAILY_BUDGET": os.environ.get("GATEWAY_MARKETO_DAILY_BUDGET", "20000"),
        # The Salesforce simulator: HTTPS with a throwaway CA, which the gate trusts as an operator's extra CA.
        "SALESFORCE_LOGIN_URL": salesforce_url,
        "SALESFORCE_CLIENT_ID": "sim-client-id",
        "SALESFORCE_CLIENT_SECRET": "sim-client-secret",
        "SALESFORCE_OPT_OUT_WRITEBACK": "true",
        "REQUESTS_CA_BUNDLE": str(salesforce_ca),
    }
    env.setdefault("SECRET_KEY", os.urandom(24).hex())
    _refuse_busy_port(host, port, "--port")
    _refuse_busy_port("127.0.0.1", marketo_port, "--marketo-port")
    _refuse_busy_port("127.0.0.1", salesforce_port, "--salesforce-port")
    simulator = salesforce = gate = sync_thread = None
    stop_sync = threading.Event()
    _stop_on_signals()
    try:
        with _signals_held():
            simulator = _spawn(
                [sys.executable, "-m", "gateway.simulators.marketo", "--host", "127.0.0.1", "--port", str(marketo_port),
                 "--seed", "demo", "--quiet"],
                env,
            )
        _wait_until_up(f"{marketo_url}/_sim/stats", simulator)
        salesforce_ca.parent.mkdir(parents=True, exist_ok=True)
        salesforce_ca.unlink(missing_ok=True)
        with _signals_held():  # a SIGTERM now must find the process already in `salesforce`, to stop it
            salesforce = _spawn(
                [sys.executable, "-m", "gateway.simulators.salesforce", "--host", "127.0.0.1", "--port",
                 str(salesforce_port), "--ca-file", str(salesforce_ca), "--quiet",
                 "--seed-user", DEMO_SALESFORCE_USER,
                 *[arg for email in DEMO_SALESFORCE_CONTACTS for arg in ("--seed-contact", email)]],
                env,
            )
        _wait_for_file(salesforce_ca, salesforce)
        os.environ.update(env)
        _wait_until_up(f"{salesforce_url}/_sim/calls", salesforce)
        engine = make_engine(env["DATABASE_URL"])
        upgrade(engine)
        Store(engine).reset_mirror()  # a fresh simulator: mirror it from scratch
        _demo_console_admin(Store(engine))
        _turn_check_on()
        sync_thread = _start_sync_thread(stop_sync)
        with _signals_held():
            gate = _spawn(
                [sys.executable, "-m", "gunicorn", "gateway:create_app()", "--bind", f"{host}:{port}",
                 "--workers", "2", "--worker-class", "gthread", "--threads", "8"],
                env,
            )
        base = f"http://{host}:{port}"
        _wait_until_up(f"{base}/healthz", gate)
        click.echo(f"\nThe gate is up at {base} (demo mode; Marketo simulator at {marketo_url}, "
                   f"Salesforce simulator at {salesforce_url}).")
        click.echo(f"Caller key: {DEMO_CALLER_KEY}   Admin key: {DEMO_ADMIN_KEY}\n")
        click.echo(_curl_examples(base))
        click.echo(f"\nAdmin console: {base}/console/ (name {DEMO_CONSOLE_ADMIN[0]!r}, "
                   f"password {DEMO_CONSOLE_ADMIN[1]!r})")
        click.echo(_salesforce_examples(base, salesforce_url, salesforce_ca))
        click.echo("\nCtrl-C stops them all.")
        gate.wait()
        raise click.ClickException(f"gunicorn exited with {gate.returncode}")
    except _Stop:
        pass
    finally:
        for name in (signal.SIGTERM, signal.SIGINT):
            signal.signal(name, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        stop_sync.set()
        if sync_thread is not None:
            sync_thread.join(timeout=10)
        for process in (gate, salesforce, simulator):
            _stop_process(process)


class _Stop(BaseException):
    """SIGTERM or SIGINT reached `gateway demo`: stop what it started, then exit 0 (a BaseException, like
    KeyboardInterrupt, so that no `except Exception` on the way swallows it)."""


def _stop_on_signals() -> None:
    def stop(*_):
        if _held["active"]:
            _held["pending"] = True  # raised when the block ends (_signals_held)
            return
        raise _Stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


_held = {"active": False, "pending": False}


@contextlib.contextmanager
def _signals_held():
    """SIGTERM and SIGINT wait until the block ends: a process started in it is always known, so always stopped.
    (A flag, not the signal mask, which the processes started here would inherit.)"""
    _held.update(active=True, pending=False)
    try:
        yield
    finally:
        _held["active"] = False
    if _held["pending"]:
        raise _Stop()


def _refuse_busy_port(host: str, port: int, option: str) -> None:
    """Fail before starting anything: otherwise an old instance on that port would answer as if it were this one."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds: TIME_WAIT is not busy
        try:
            probe.bind((host, port))
        except OSError as error:
            raise click.ClickException(f"{host}:{port} is not free ({error.strerror}); "
                                       f"stop what runs there or choose another {option}") from None


def _spawn(command: list[str], env: dict) -> subprocess.Popen:
    # A process group of its own: the demo alone decides when it stops, and can stop all of it (gunicorn's workers too).
    return subprocess.Popen(command, env=env, start_new_session=True)


def _stop_process(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _start_sync_thread(stop: threading.Event) -> threading.Thread:
    """In demo mode the mirror sync runs in this process rather than in a worker of its own."""
    from gateway import build_gate
    from gateway.config import load_config
    from gateway.worker import run_worker

    thread = threading.Thread(target=run_worker, args=(build_gate(load_config()), stop), name="mirror-sync", daemon=True)
    thread.start()
    return thread


def _demo_console_admin(store: Store) -> None:
    from gateway.console.accounts import hash_password

    name, password = DEMO_CONSOLE_ADMIN
    if store.admins.by_name(name) is None:
        store.admins.create(name, hash_password(password))
    else:
        store.admins.set_password(name, hash_password(password))


def _turn_check_on() -> None:
    """The same path an admin takes: PATCH the setting, which first tests the Marketo connection."""
    from gateway import create_app

    app = create_app()
    response = app.test_client().patch(
        "/v1/admin/settings",
        json={"marketo_check_enabled": True},
        headers={"Authorization": f"Bearer {DEMO_ADMIN_KEY}"},
    )
    if response.status_code != 200:
        raise click.ClickException(f"could not turn the check on: {response.get_json()}")
    app.extensions["gate"].store.engine.dispose()


