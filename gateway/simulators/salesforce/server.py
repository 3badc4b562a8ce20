"""Serving the Salesforce simulator over real HTTPS, with a throwaway CA made by trustme.

The CA's certificate is written to a file (`ca_path`): hand it to the gate as REQUESTS_CA_BUNDLE, the way an
operator adds a corporate CA; the gate then verifies the simulator's certificate like any other.
"""
from __future__ import annotations

import os
import ssl
import tempfile

import trustme

from gateway.simulators.salesforce.app import create_salesforce_app
from gateway.simulators.salesforce.state import SalesforceSimState
from gateway.simulators.serving import ServedApp, ServedSimulator, serve_in_thread


class RunningSalesforceSimulator(ServedSimulator):
    """The Salesforce simulator served over HTTPS; `ca_path` holds its CA's certificate."""

    state: SalesforceSimState

    def __init__(self, served: ServedApp, state: SalesforceSimState, ca_path: str, owns_ca_file: bool):
        super().__init__(served, state)
        self.ca_path = ca_path
        self._owns_ca_file = owns_ca_file

    def _release(self) -> None:
        self.state.release_held()

    def _after_stop(self) -> None:
        if self._owns_ca_file:
            try:
                os.unlink(self.ca_path)
            except OSError:
                pass


def start_salesforce_simulator(state: SalesforceSimState | None = None, host: str = "127.0.0.1", port: int = 0, *,
                               quiet: bool = True, ca_path: str | None = None) -> RunningSalesforceSimulator:
    """Serve the simulator over HTTPS in a background thread (port 0 = a free port); the CA goes to `ca_path`
    (a temporary file, removed on stop, when not given)."""
    state = state if state is not None else SalesforceSimState()
    ca = trustme.CA()
    names = [host] if host not in ("0.0.0.0", "::", "") else ["127.0.0.1"]
    certificate = ca.issue_cert(*dict.fromkeys([*names, "localhost", "127.0.0.1"]))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    certificate.configure_cert(context)
    owns = ca_path is None
    if owns:
        handle, ca_path = tempfile.mkstemp(prefix="salesforce-sim-ca-", suffix=".pem")
        os.close(handle)
    ca.cert_pem.write_to_path(ca_path)
    served = serve_in_thread(create_salesforce_app(state), host, port, quiet=quiet, name="salesforce-simulator",
                             ssl_context=context)
    return RunningSalesforceSimulator(served, state, ca_path, owns)
