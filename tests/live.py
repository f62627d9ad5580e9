"""The app on a real threaded HTTP server on 127.0.0.1 (for clients that speak HTTP over
sockets: the WeCom callback emitter, a browser). Needs a `dbcommit` test: request threads use
their own database connections."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def live_app(app: Any) -> Iterator[str]:
    """Serves `app` until the block ends; yields its base URL (http://127.0.0.1:<port>)."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    thread = threading.Thread(target=server.serve_forever, name="dealerloop-live", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
