"""Servers a fault test owns, so it can stop, freeze and restart them: a Redis and a PostgreSQL cluster on
free ports of their own (never the shared ones)."""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass

import pytest

from tests.conftest import IN_CI, free_port, wait_for


def missing(reason: str):
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class OwnRedis:
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: answers(self.port), what="redis-server to listen")

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def own_redis():
    if shutil.which("redis-server") is None:
        missing("redis-server is not installed")
    redis = OwnRedis(free_port())
    redis.start()
    yield redis
    redis.stop()


def postgres_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(found[-1]) if found else None


@dataclass
class OwnPostgres:
    """A throwaway cluster in a temporary folder, run as the `postgres` user when we are root."""

    bindir: str
    datadir: str
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [os.path.join(self.bindir, args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    def init(self) -> None:
        self._run("initdb", "-D", self.datadir, "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.datadir} -c fsync=off"
        self._run("pg_ctl", "-D", self.datadir, "-o", options, "-l", os.path.join(self.datadir, "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", self.datadir, "-m", "fast", "-w", "stop")

    def engine(self):
        from gateway.store.db import make_engine

        return make_engine(self.url)


@pytest.fixture
def own_postgres():
    bindir = postgres_bin()
    if bindir is None:
        missing("PostgreSQL's server binaries are not installed")
    from gateway.store.db import upgrade

    folder = tempfile.mkdtemp(prefix="gate-pg-")
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    cluster = OwnPostgres(bindir, os.path.join(folder, "data"), free_port())
    cluster.init()
    cluster.start()
    engine = cluster.engine()
    upgrade(engine)
    engine.dispose()
    try:
        yield cluster
    finally:
        try:
            cluster.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(folder, ignore_errors=True)
