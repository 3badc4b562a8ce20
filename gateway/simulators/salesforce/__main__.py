"""``python -m gateway.simulators.salesforce``: serve the Salesforce simulator over HTTPS until SIGTERM or Ctrl-C."""
from __future__ import annotations

import argparse

from gateway.simulators.salesforce.server import start_salesforce_simulator
from gateway.simulators.salesforce.state import CLIENT_ID, CLIENT_SECRET, SalesforceSimState
from gateway.simulators.serving import serve_until_signalled


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m gateway.simulators.salesforce", description="Salesforce simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8443, help="0 = a free port (printed on start)")
    p.add_argument("--ca-file", required=True, help="where to write the throwaway CA (give it as REQUESTS_CA_BUNDLE)")
    p.add_argument("--client-id", default=CLIENT_ID)
    p.add_argument("--client-secret", default=CLIENT_SECRET)
    p.add_argument("--seed-contact", action="append", default=[], metavar="EMAIL", help="a Contact with this email")
    p.add_argument("--seed-user", action="append", default=[], metavar="ID", help="a User (005…) with this id")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    state = SalesforceSimState(client_id=args.client_id, client_secret=args.client_secret)
    for user_id in args.seed_user:
        state.add("User", {"Id": user_id, "Name": "Demo Rep", "Email": "rep@acme.example"})
    for email in args.seed_contact:
        state.add("Contact", {"LastName": email.split("@")[0], "Email": email})
    serve_until_signalled(
        lambda: start_salesforce_simulator(state, args.host, args.port, quiet=args.quiet, ca_path=args.ca_file),
        "Salesforce simulator")


if __name__ == "__main__":
    main()
