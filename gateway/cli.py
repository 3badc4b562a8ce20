"""`gateway` command: migrations, API keys, and the demo.

\b
    gateway migrate                     bring the database schema up to date (Procfile `release:`)
    gateway prepare                     check the configuration; migrate an embedded SQLite database
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

import os
import signal
import sys
import threading

import click

from gateway.config import ConfigError, database_url, load_config
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


@main.command(help="Check the configuration and migrate the embedded SQLite database (gunicorn runs this "
                   "before it starts its workers; PostgreSQL is migrated by the release phase).")
def prepare() -> None:
    load_config()
    url = database_url()
    if url.startswith("sqlite"):
        upgrade(make_engine(url))


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


@main.command(help="Run the gate in demo mode: seeded Marketo and Salesforce simulators, SQLite, the check turned on.")
@click.option("--port", type=int, default=lambda: int(os.environ.get("PORT", 8000)), show_default="$PORT or 8000")
@click.option("--marketo-port", type=int, default=8101, show_default=True)
@click.option("--salesforce-port", type=int, default=8443, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def demo(port: int, marketo_port: int, salesforce_port: int, host: str) -> None:
    from gateway.demo import run_demo

    run_demo(port, marketo_port, salesforce_port, host)


if __name__ == "__main__":
    main()
