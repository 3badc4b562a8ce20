"""Serving the Marketo simulator over real HTTP in a background thread."""
from __future__ import annotations

from gateway.simulators.marketo.app import create_simulator_app
from gateway.simulators.marketo.state import SimulatorState
from gateway.simulators.serving import ServedSimulator, serve_in_thread


class RunningSimulator(ServedSimulator):
    """The Marketo simulator served over real HTTP in a background thread."""

    state: SimulatorState

    def _release(self) -> None:
        self.state.release_waiters()  # a request sleeping out a fault's latency must not hold up shutdown


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
