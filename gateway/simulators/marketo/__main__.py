"""``python -m gateway.simulators.marketo``: serve the simulator until SIGTERM or Ctrl-C."""
from gateway.simulators.marketo.cli import main

main()
