"""`gateway` command: migrations, API keys, and the demo.

\b
    gateway migrate                     bring the database schema up to date (Procfile `release:`)
    gateway keys create NAME --role R   make a key, print it once, keep only its hash
        [--source S ...] [--require-signature]   limit it to sources; require signed callouts
    gateway keys list | revoke NAME
    gateway admins create NAME          an account for the admin console (password at a prompt,
        [--password-stdin]               or the first line of standard input)
    gateway admins list | password NAME | delete NAME
    gateway worker                      keep the mirror of Marketo's unsubscribes in sync (Procfile `worker:`)
    gateway demo                        the gate and seeded Marketo and Salesforce simulators on this machine
"""
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

from gateway.config import ConfigError, database_url
from gateway.domain import SOURCES
from gateway.store import Store
from gateway.store.db import make_engine, upgrade


def _store() -> Store:
    return Store(make_engine(database_url()))


class _Gateway(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ConfigError as error:  # one line that says what to set, not a traceback
            raise click.ClickException(f"configuration: {error}") from None


@click.group(cls=_Gateway, help=__doc__)
def main() -> None:
    pass


@main.command(help="Apply every pending database migration.")
def migrate() -> None:
    engine = make_engine(database_url())
    upgrade(engine)
    click.echo(f"database at revision head ({engine.url.get_backend_name()})")


@main.group(help="Manage the gate's API keys.")
def keys() -> None:
    pass


@keys.command("create", help="Create a key. It is printed once; the gate stores only its hash.")
@click.argument("name")
@click.option("--role", type=click.Choice(["caller", "admin"]), default="caller", show_default=True)
@click.option("--source", "sources", multiple=True, type=click.Choice(SOURCES),
              help="Limit a caller key to this source (repeat for several): salesforce may call only "
                   "/v1/hooks/salesforce, outlook and gmail only /v1/hooks/email-client with that client, "
                   "web only /v1/checks with that source, marketo only /v1/hooks/marketo (Marketo's "
                   "webhook). Without it: any.")
@click.option("--require-signature", is_flag=True,
              help="Require every callout with this key to be signed (Standard Webhooks); prints a signing "
                   "secret once.")
def create_key(name: str, role: str, sources: tuple[str, ...], require_signature: bool) -> None:
    if role == "admin" and (sources or require_signature):
        raise click.UsageError("--source and --require-signature are for caller keys")
    if require_signature and "marketo" in sources:
        raise click.UsageError("Marketo's webhooks cannot sign their calls: a --source marketo key cannot "
                               "--require-signature")
    store = _store()
    if any(key.name == name for key in store.keys.all()):
        raise click.ClickException(f"a key named {name!r} exists already")
    new = store.keys.create(name, role, sources=sources, require_signature=require_signature)
    limited = f", limited to {', '.join(dict.fromkeys(sources))}" if sources else ""
    click.echo(f"{role} key {name!r} created{limited}. It is shown only now:\n{new.key}")
    if new.signing_secret:
        click.echo(f"Signing secret (also shown only now; every request must be signed with it):\n"
                   f"{new.signing_secret}")


@keys.command("list", help="List keys (never the keys themselves).")
def list_keys() -> None:
    for key in _store().keys.all():
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
        sources = f"sources {','.join(key.sources)}" if key.sources else "any source"
        signed = "signed" if key.require_signature else "unsigned"
        click.echo(f"{key.name}\t{key.role}\t{state}\t{sources}\t{signed}\tlast used {used}")


@keys.command("revoke", help="Revoke a key at once.")
@click.argument("name")
def revoke_key(name: str) -> None:
    if not _store().keys.revoke(name):
        raise click.ClickException(f"no active key named {name!r}")
    click.echo(f"key {name!r} revoked")


@main.group(help="Manage the admin console's accounts (API keys cannot open the console).")
def admins() -> None:
    pass


def _read_password(from_stdin: bool) -> str:
    from gateway.console.accounts import password_problem

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    problem = password_problem(password)
    if problem:
        raise click.ClickException(problem)
    return password


@admins.command("create", help="Create an admin account; it signs in to /console by NAME.")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def create_admin(name: str, password_stdin: bool) -> None:
    from gateway.console.accounts import hash_password
    from gateway.store import AdminExists

    if not name.strip() or len(name) > 100:
        raise click.UsageError("NAME must be 1 to 100 characters")
    password = _read_password(password_stdin)
    try:
        _store().admins.create(name.strip(), hash_password(password))
    except AdminExists:
        raise click.ClickException(f"an admin named {name!r} exists already") from None
    click.echo(f"admin {name.strip()!r} created; sign in at /console/sign-in")


@admins.command("list", help="List admin accounts (never their passwords).")
def list_admins() -> None:
    from gateway.store import utcnow

    now = utcnow()
    for admin in _store().admins.all():
        state = f"locked until {admin.locked_until:%Y-%m-%d %H:%M} UTC" if admin.locked_at(now) else "active"
        last = f"{admin.last_sign_in_at:%Y-%m-%d %H:%M}" if admin.last_sign_in_at else "never"
        click.echo(f"{admin.name}\t{state}\tlast sign-in {last}")


@admins.command("password", help="Set a new password for an admin (this also lifts a lockout).")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def admin_password(name: str, password_stdin: bool) -> None:
    from gateway.console.accounts import hash_password

    store = _store()
    if store.admins.by_name(name) is None:
        raise click.ClickException(f"no admin named {name!r}")
    store.admins.set_password(name, hash_password(_read_password(password_stdin)))
    click.echo(f"password of {name!r} changed")


@admins.command("delete", help="Delete an admin account; its sessions end at their next request.")
@click.argument("name")
def delete_admin(name: str) -> None:
    if not _store().admins.delete(name):
        raise click.ClickException(f"no admin named {name!r}")
    click.echo(f"admin {name!r} deleted")


@main.command(help="Keep the mirror of Marketo's unsubscribes in sync until SIGTERM.")
@click.option("--once", is_flag=True, help="Sync once (the full load first, if it is not done) and exit.")
def worker(once: bool) -> None:
    from gateway import build_gate, configure_logging
    from gateway.config import load_config
    from gateway.marketo.interfaces import NOT_CONFIGURED
    from gateway.worker import mirror_sync_for, run_worker

    configure_logging()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    gate = build_gate(load_config())
    if not gate.config.marketo_configured:
        raise click.ClickException(NOT_CONFIGURED)
    if not once:
        run_worker(gate, stop)
        return
    report = mirror_sync_for(gate, stop).run_once()
    if not report.ran:
        raise click.ClickException("another worker holds the sync lease; try again when it is done")
    if report.error:
        raise click.ClickException(f"sync failed: {report.error}")
    click.echo(f"synced: {report.loaded_windows} windows loaded, {report.change_pages} change pages, "
               f"mirror holds {gate.store.mirror.size()} unsubscribed addresses")


# Demo ------------------------------------------------------------------------

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


@main.command(help="Run the gate in demo mode: seeded Marketo and Salesforce simulators, SQLite, the check turned on.")
@click.option("--port", type=int, default=lambda: int(os.environ.get("PORT", 8000)), show_default="$PORT or 8000")
@click.option("--marketo-port", type=int, default=8101, show_default=True)
@click.option("--salesforce-port", type=int, default=8443, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def demo(port: int, marketo_port: int, salesforce_port: int, host: str) -> None:
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


if __name__ == "__main__":
    main()
