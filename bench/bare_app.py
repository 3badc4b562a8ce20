"""The ceiling for bench_checks.py: a bare Flask app on the same gunicorn settings as the gate.

It reads and parses the JSON body (as any JSON endpoint must) and answers a fixed, gate-shaped
answer, with no auth, validation, database, cache or Marketo. Served as `gunicorn bench.bare_app:app`.
"""
from flask import Flask, jsonify, request

app = Flask(__name__)
app.json.sort_keys = False

ANSWER = {
    "check_id": "chk_00000000000000000000000000000000",
    "enabled": True,
    "id": None,
    "decision": "allow",
    "reason_code": "allowed",
    "reason": "Allowed: nobody on this message has unsubscribed in Marketo.",
    "deliver_to": ["person1@example.com"],
    "blocked": [],
    "recipients": [
        {
            "email": "person1@example.com",
            "type": "to",
            "decision": "allow",
            "reason_code": "allowed",
            "reason": "person1@example.com may receive email.",
            "checked_via": "bare",
        }
    ],
}


@app.post("/v1/hooks/email-client")
def email_client_callout():
    request.get_json()
    return jsonify(ANSWER)


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")
