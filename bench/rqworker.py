"""`python -m bench.rqworker [--burst]`: the app's `flask --app wsgi worker`, but with RQ's
non-forking `SimpleWorker` — a bench-side workaround, not a replacement.

`flask worker` (backend/cli.py) runs the outbox relayer in a thread of the RQ worker process and
RQ's default `Worker` forks a work horse for every job. The child inherits the parent's
SQLAlchemy pool, whose connections the relayer thread keeps using, so two processes talk over
one MySQL connection: jobs fail with `NotImplementedError` from result metadata, `Lost connection
to MySQL server during query`, or another statement's error (a periodic job's duplicate key
reported for `INSERT INTO customer_kind_count`), and some writes land on the other process's
transaction. Seen in the paynotify and wecomcallback runs; see bench/README.md. Everything else
here is what `flask worker` does: the same app (wsgi:app, configured from the environment), the
same queues, the scheduler, the relayer and intake pump threads.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def main(argv: list[str] | None = None) -> int:
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    from backend.platform.jobs import QUEUES, set_worker_app, start_worker_threads
    from wsgi import app

    argv = sys.argv[1:] if argv is None else argv
    redis_client = app.extensions["dealerloop.redis"]
    if redis_client is None:
        raise SystemExit("bench.rqworker needs REDIS_URL")
    set_worker_app(app)
    stop = threading.Event()
    start_worker_threads(app, stop)  # the relayer and the fast-intake pumps
    try:
        with app.app_context():
            SimpleWorker(list(QUEUES), connection=redis_client, serializer=JSONSerializer).work(
                with_scheduler=True, burst="--burst" in argv
            )
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
