"""Serving a simulator's WSGI app over real HTTP: in a background thread (tests, benchmarks), or
in the foreground until SIGTERM/SIGINT (``python -m gateway.simulators.<service>``)."""
from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from werkzeug.serving import WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class _LoggingHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"


class ServedApp:
    """A WSGI app served by a threaded HTTP server in a background thread."""

    def __init__(self, server: Any, thread: threading.Thread, base_url: str):
        self._server = server
        self._thread = thread
        self.base_url = base_url
        self._stopped = False

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._thread.join(timeout=10)
        self._server.server_close()


class ServedSimulator:
    """A simulator served in a background thread: its state, its URL, and a stop that runs once.

    Subclasses free what could hold up shutdown (`_release`) and clean up after the server stopped
    (`_after_stop`)."""

    def __init__(self, served: ServedApp, state: Any):
        self._served = served
        self.state = state
        self.base_url = served.base_url
        self._stopped = False

    @property
    def port(self) -> int:
        return self._served.port

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._release()
        self._served.stop()
        self._after_stop()

    def _release(self) -> None:
        pass

    def _after_stop(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base_url}>"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _wait_accepting(host: str, port: int, deadline: float) -> None:
    connect_host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    while True:
        try:
            with socket.create_connection((connect_host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def serve_in_thread(app: Any, host: str, port: int, *, quiet: bool, name: str,
                    ssl_context: Any = None) -> ServedApp:
    """Serve ``app`` on ``host``:``port`` (0 = a free port) in a daemon thread named
    ``name:<port>``; returns once the server accepts connections. With ``ssl_context``, over HTTPS."""
    handler = _QuietHandler if quiet else _LoggingHandler
    server = make_server(host, port, app, threaded=True, request_handler=handler, ssl_context=ssl_context)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1},
        name=f"{name}:{server.server_port}", daemon=True,
    )
    thread.start()
    actual_port = server.server_port
    try:
        _wait_accepting(host, actual_port, time.monotonic() + 10)
    except OSError:
        server.shutdown()
        thread.join(timeout=5)
        raise
    scheme = "https" if ssl_context is not None else "http"
    return ServedApp(server, thread, f"{scheme}://{_url_host(host)}:{actual_port}")


class Stoppable(Protocol):
    base_url: str

    def stop(self) -> None: ...


def serve_until_signalled(start: Callable[[], Stoppable], title: str) -> None:
    """Start a server with ``start()``, print where it listens, and stop it on SIGTERM or SIGINT."""
    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    running = start()
    try:
        print(f"{title} listening on {running.base_url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        running.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"{title} stopped", file=sys.stderr, flush=True)
