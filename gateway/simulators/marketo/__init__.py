"""A small Marketo Engage simulator: a Flask app that speaks the documented protocol.

Used by the integration tests (over real HTTP), the benchmark and the demo mode.
It reproduces what the gate depends on (see docs/marketo-api.md):

* ``/identity/oauth/token`` (client credentials in the query string, one token
  per client reused until it expires);
* ``/rest/v1/leads.json`` by ``email`` or ``id`` (GET, or ``POST ?_method=GET``
  with a form body), ``fields``, ``batchSize`` and ``nextPageToken`` paging;
* the envelope (``requestId``, ``success``, ``result`` / ``errors`` with string
  codes, HTTP 200), HTTP 414 for a URL over 8 KB and 413 for a body over 1 MB;
* the activity stream: ``/rest/v1/activities/types.json``,
  ``activities/pagingtoken.json``, ``activities.json`` (by type) and
  ``activities/leadchanges.json`` (by changed field), fed by an activity log that
  every change of the simulated database appends to;
* Bulk Lead Extract: ``/bulk/v1/leads/export/create.json``, ``…/enqueue.json``,
  ``…/status.json``, ``…/file.json`` (with ``Range``) and ``…/cancel.json``; the
  ``createdAt``/``updatedAt`` and ``staticListId``/``smartListId`` filters; 2 jobs
  processing and 10 queued at most; a job done on its Nth status poll, or, with
  ``export_job_seconds``, after that long on the wall clock, polled or not;
* static and smart lists, and the asset API's ``/rest/asset/v1/staticList/byName.json``
  and ``/rest/asset/v1/smartList/byName.json``;
* the instance limits (606 rate, 615 concurrency, 607 daily quota);
* injected faults (error codes, bare HTTP statuses, latency, failed export jobs)
  and a control API under ``/_sim/`` for out-of-process use.

Order in which a REST call is judged: 615 (concurrency), 606 (rate window),
607 (daily quota), then an injected fault (latency, then code or HTTP status),
then authentication (600/601/602), then the endpoint itself. Calls rejected by
615/606 do not enter the rate window or the quota and do not consume a fault.

Run it standalone with ``python -m gateway.simulators.marketo --port 8101 --seed demo``.

Where each concern lives:

* ``state``: ``SimulatorState`` (one lock over all the parts below) and ``seed_demo``;
* ``leads``: the lead database, its changes, ``leads.json``;
* ``activities``: activity types, the activity log, ``activities.json`` and ``leadchanges.json``;
* ``exports``: Bulk Lead Extract jobs, their files and endpoints;
* ``lists``: static and smart lists, their members and the asset API's look-up by name;
* ``auth``: access tokens and ``/identity/oauth/token``;
* ``limits``: 615/606/607 (with the quota day), injected faults, the counters;
* ``protocol``: error codes and messages, ``SimError``, date and value formats;
* ``http``: the envelope, ``rest_endpoint`` (the judging order above), Marketo's front door;
* ``control``: the ``/_sim/`` control API; ``app``: the Flask app; ``server``: ``start_simulator``;
* ``cli`` and ``__main__``: the command.
"""
from gateway.simulators.marketo.app import create_simulator_app
from gateway.simulators.marketo.cli import main
from gateway.simulators.marketo.server import RunningSimulator, start_simulator
from gateway.simulators.marketo.state import SimulatorState, seed_demo

__all__ = [
    "RunningSimulator",
    "SimulatorState",
    "create_simulator_app",
    "main",
    "seed_demo",
    "start_simulator",
]
