"""Simulators of the services the gate talks to, one subpackage per service (``marketo``).

Each is a product of its own: a Flask app speaking the service's documented protocol, served over
real HTTP for the integration tests, the benchmarks and ``gateway demo``. What serving code they
share lives in ``gateway.simulators.serving``.
"""
