"""Serving the Marketo simulator over real HTTP in a background thread."""
from __future__ import annotations

from typing import Any

from gateway.simulators.marketo.app import create_simulator_app
from gateway.simulators.marketo.state import SimulatorState
from gateway.simulators.serving import ServedApp, serve_in_thread


class RunningSimulator:
    """A simulator served over real HTTP in a background thread."""

    def __init__(self, served: ServedApp, state: SimulatorState):
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
        self.state.release_waiters()  # a request sleeping out a fault's latency must not hold up shutdown
        self._served.stop()

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RunningSimulator {self.base_url}>"


def start_simulator(
    state: SimulatorState | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    quiet: bool = True,
) -> RunningSimulator:
    """Serve a simulator over HTTP in a background thread (port 0 = a free port).
    Returns once it accepts connections."""
    state = state if state is not None else SimulatorState()
    served = serve_in_thread(create_simulator_app(state), host, port, quiet=quiet, name="marketo-simulator")
    return RunningSimulator(served, state)
