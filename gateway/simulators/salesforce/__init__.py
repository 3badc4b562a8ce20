"""A small Salesforce org for the gate's tests and demo, speaking the REST wire facts of docs/integrations.md
over real HTTPS (a throwaway CA from trustme; certificates are verified by the gate).

* ``POST /services/oauth2/token``: the client credentials flow (``400 invalid_client`` on bad credentials);
* ``GET /services/data/v{ver}/query?q=`` with paging (``nextRecordsUrl``, ``page_size`` records a page) over
  the SOQL the gate writes (``soql``), on Contacts, Leads, Users and Tasks;
* ``POST`` and ``PATCH /services/data/v{ver}/composite/sobjects``: create and update, at most 200 records,
  one result per record in order (converted Leads and bad ids are per-record errors);
* faults: down (503), ``REQUEST_LIMIT_EXCEEDED`` (403), expired sessions (401 ``INVALID_SESSION_ID``),
  per-record rejections, and holding a create's answer (to kill a worker between Salesforce's write and the
  gate's record of it);
* the control API under ``/_sim/``: ``records``, ``tasks``, ``faults``, ``expire-sessions``, ``rejections``,
  ``calls``.

Where each concern lives: ``state`` (the org, tokens, faults, counts), ``soql`` (the query slice), ``app`` (the
REST front door and ``/_sim/``), ``server`` (HTTPS in a thread), ``__main__`` (the command).
Run it with ``python -m gateway.simulators.salesforce --port 8443 --ca-file sim-ca.pem --seed-contact a@b.c``.
"""
from gateway.simulators.salesforce.app import create_salesforce_app
from gateway.simulators.salesforce.server import RunningSalesforceSimulator, start_salesforce_simulator
from gateway.simulators.salesforce.state import CLIENT_ID, CLIENT_SECRET, SalesforceSimState

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "RunningSalesforceSimulator", "SalesforceSimState",
           "create_salesforce_app", "start_salesforce_simulator"]
