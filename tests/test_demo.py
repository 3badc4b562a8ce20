"""`gateway demo` as a server: it stops everything it started on SIGTERM or SIGINT, and refuses a busy port."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from tests.conftest import free_port, wait_for

GATEWAY = Path(sys.executable).parent / "gateway"


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def demo_env(tmp_path: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GATEWAY_", "MARKETO_", "PORT"))}
    return {**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}", "GATEWAY_SYNC_INTERVAL": "2",
            "PYTHONUNBUFFERED": "1"}  # what the demo prints is readable while it runs


class Demo(subprocess.Popen):
    """`gateway demo` with its output in files, readable while it runs (pipes would fill with the access log)."""

    def __init__(self, tmp_path: Path, port: int, marketo_port: int, salesforce_port: int | None = None):
        self.out_path, self.err_path = tmp_path / "demo.out", tmp_path / "demo.err"
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            super().__init__([str(GATEWAY), "demo", "--port", str(port), "--marketo-port", str(marketo_port),
                              "--salesforce-port", str(salesforce_port or free_port())],
                             env=demo_env(tmp_path), cwd=tmp_path, stdout=out, stderr=err, text=True)

    def printed(self) -> tuple[str, str]:
        return self.out_path.read_text(), self.err_path.read_text()

    def finish(self, timeout: float = 60) -> tuple[str, str]:
        self.wait(timeout=timeout)
        return self.printed()

    def __exit__(self, *exc_info) -> None:
        """A test that failed before the demo stopped leaves nothing running behind it."""
        if self.poll() is None:
            self.kill()
        super().__exit__(*exc_info)


def answers(url: str, timeout: float = 1) -> bool:
    try:
        return requests.get(url, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_demo_and_everything_it_started(tmp_path, stop_signal):
    port, marketo_port = free_port(), free_port()
    with Demo(tmp_path, port, marketo_port) as demo:
        wait_for(lambda: "The gate is up" in demo.printed()[0] or demo.poll() is not None, 90, "the demo says it is up")
        assert demo.poll() is None, demo.printed()
        # Once, not polled: up means answering. Its first /readyz reads the migration scripts, which on a
        # loaded machine took over the 1 s a poll waits (CI, 2026-11-27), so it gets time to answer.
        assert answers(f"http://127.0.0.1:{port}/readyz", timeout=15)
        started = descendants(demo.pid)
        assert len(started) >= 4, "the simulator, gunicorn and its two workers"
        demo.send_signal(stop_signal)
        out, err = demo.finish()
    assert demo.returncode == 0, err
    assert "The gate is up" in out
    assert not [pid for pid in started if alive(pid)], "processes the demo started are still running"
    assert port_is_free(port) and port_is_free(marketo_port)


@pytest.mark.parametrize("busy", ["gate", "marketo"])
def test_a_busy_port_is_an_error_before_anything_is_up(tmp_path, busy):
    port, marketo_port = free_port(), free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port if busy == "gate" else marketo_port))
        squatter.listen()
        with Demo(tmp_path, port, marketo_port) as demo:
            out, err = demo.finish()
        other = marketo_port if busy == "gate" else port
        assert port_is_free(other), "nothing was started on the other port"
    assert demo.returncode == 1
    assert "is up" not in out
    busy_port = port if busy == "gate" else marketo_port
    option = "--port" if busy == "gate" else "--marketo-port"
    assert f"127.0.0.1:{busy_port} is not free" in err
    assert option in err


def test_sigterm_while_starting_stops_what_was_started(tmp_path):
    port, marketo_port = free_port(), free_port()
    with Demo(tmp_path, port, marketo_port) as demo:
        wait_for(lambda: answers(f"http://127.0.0.1:{marketo_port}/_sim/stats") or demo.poll() is not None, 60,
                 "the simulator is up")
        started = descendants(demo.pid)
        assert started, "the simulator runs"
        demo.send_signal(signal.SIGTERM)
        out, err = demo.finish()
    assert demo.returncode == 0, err
    assert not [pid for pid in started if alive(pid)]
    assert port_is_free(port) and port_is_free(marketo_port)


def test_the_demo_turns_a_blocked_salesforce_send_into_a_task_in_its_salesforce_simulator(tmp_path):
    port, marketo_port, salesforce_port = free_port(), free_port(), free_port()
    ca = tmp_path / "instance" / "salesforce-sim-ca.pem"
    tasks_url = f"https://127.0.0.1:{salesforce_port}/_sim/tasks"
    body = {"workflow": "single_send", "userId": "005xx0000012345",
            "records": [{"attributes": {"type": "EmailMessage"}, "ToAddress": "unsub@example.com; bob@example.com"}]}
    with Demo(tmp_path, port, marketo_port, salesforce_port) as demo:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/readyz") or demo.poll() is not None, 90, "the demo is up")
        assert demo.poll() is None, demo.printed()

        def denied() -> bool:  # the mirror's first load may still be running: ask until Marketo's answer is in
            answer = requests.post(f"http://127.0.0.1:{port}/v1/hooks/salesforce", json=body, timeout=10,
                                   headers={"Authorization": "Bearer demo-caller-key"}).json()
            return answer["results"][0]["reason_code"] == "unsubscribed"

        wait_for(denied, 60, "the send is denied")

        def tasks() -> list:
            return requests.get(tasks_url, verify=str(ca), timeout=5).json()["tasks"]

        wait_for(lambda: tasks(), 60, "the Task arrives in the Salesforce simulator")
        task = tasks()[0]
        assert task["Subject"] == "Email not sent: unsubscribed in Marketo"
        assert task["OwnerId"] == "005xx0000012345" and "unsub@example.com" in task["Description"]
        demo.send_signal(signal.SIGTERM)
        out, err = demo.finish()
    assert demo.returncode == 0, err
    assert "/_sim/tasks" in out
    assert port_is_free(salesforce_port)
