"""The hot path through the WSGI app alone: raw WSGI calls of the email-client check, the gate against bare Flask.

    .venv/bin/python bench/bench_wsgi.py            # µs per request, 3 × 10,000 calls each, alternating
    .venv/bin/python bench/bench_wsgi.py prof [cumtime|tottime] [N]   # then cProfile of 20,000 gate calls
    .venv/bin/python bench/bench_wsgi.py callers <name> ...           # who calls <name>, and what it calls

No gunicorn, gevent or sockets: what is left is each app's own work, steadier than bench_hotpath.py on a busy
machine. The gate runs on SQLite in a temp dir with the rate limiter on (counting in the process), the mirror
marked loaded and fresh (empty: every recipient allowed), and the check on.
"""
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
tmp = tempfile.mkdtemp()
url = f"sqlite:///{tmp}/p.sqlite3"
os.environ.update({"DATABASE_URL": url, "SECRET_KEY": "x", "GATEWAY_API_KEYS": "bench:caller:bench-key",
                   "GATEWAY_RATE_LIMIT": "1000000/minute", "GATEWAY_MIRROR_MAX_AGE": "86400"})

from sqlalchemy import update  # noqa: E402

from gateway.store import SYNC_ID, Store, utcnow  # noqa: E402
from gateway.store.db import make_engine, upgrade  # noqa: E402
from gateway.store.models import SyncState  # noqa: E402

upgrade(make_engine(url))
eng = make_engine(url)
with eng.begin() as c:
    c.execute(update(SyncState).where(SyncState.id == SYNC_ID).values(
        load_status="complete", load_finished_at=utcnow(), last_success_at=utcnow(), mirror_version=1,
        mirror_reset_version=0))
Store(eng).settings.update({"marketo_check_enabled": True}, updated_by="bench")

from app import app as gate  # noqa: E402
from bare_app import app as bare  # noqa: E402


def environ(i):
    body = ('{"client":"outlook","to":["person%d@example.com"]}' % (i % 1000)).encode()
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/hooks/email-client", "SERVER_NAME": "x", "SERVER_PORT": "80",
            "wsgi.url_scheme": "http", "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": "Bearer bench-key", "wsgi.input": io.BytesIO(body), "REMOTE_ADDR": "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.errors": sys.stderr}


def run(app, n):
    out = []

    def start_response(status, headers, exc=None):
        out.append(status)

    for i in range(n):
        b"".join(app(environ(i), start_response))
    return out


for name, app in (("bare", bare), ("gate", gate)):
    statuses = run(app, 2000)
    assert statuses[-1].startswith("200"), (name, statuses[-1])
for _ in range(3):
    for name, app in (("bare", bare), ("gate", gate)):
        started = time.perf_counter()
        run(app, 10000)
        print(name, round((time.perf_counter() - started) / 10000 * 1e6, 1), "us/req")
if "prof" in sys.argv or "callers" in sys.argv:
    profile = cProfile.Profile()
    profile.enable()
    run(gate, 20000)
    profile.disable()
    stats = pstats.Stats(profile)
    if "prof" in sys.argv:
        args = sys.argv[sys.argv.index("prof") + 1:]
        stats.sort_stats(args[0] if args else "cumtime").print_stats(int(args[1]) if len(args) > 1 else 70)
    else:
        for name in sys.argv[sys.argv.index("callers") + 1:]:
            stats.print_callers(name)
            stats.print_callees(name)
