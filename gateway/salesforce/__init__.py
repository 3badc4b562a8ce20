"""Salesforce: the REST client on simple-salesforce, its null twin, the outbox of Tasks and opt-outs, record ids."""
