"""Serve a sandbox on 127.0.0.1 from a daemon thread (tests, local runs without the app)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Response

if TYPE_CHECKING:
    from . import Sandbox


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # the request log lives in the state
        return None


def _not_found(environ: dict[str, Any], start_response: Any) -> Any:
    return Response("unknown sandbox service", status=404)(environ, start_response)


class SandboxServer:
    """One WSGI server dispatching `/wechat`, `/wecom`, `/wechatpay` to the sandbox apps."""

    def __init__(self, sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sandbox = sandbox
        self.host = host
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    @property
    def state(self):
        return self.sandbox.state

    def start(self) -> str:
        if self._server is not None:
            return self.base_url
        app = DispatcherMiddleware(
            _not_found,
            {
                "/wechat": self.sandbox.wechat_app,
                "/wecom": self.sandbox.wecom_app,
                "/wechatpay": self.sandbox.wechatpay_app,
            },
        )
        self._server = make_server(self.host, self.port, app, threaded=True, request_handler=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="dealerloop-sandbox", daemon=True)
        self._thread.start()
        self.base_url = f"http://{self.host}:{self.port}"
        return self.base_url

    def stop(self) -> None:
        if self._server is None:
            return
        self.sandbox.state.clear_faults()  # wake any request sleeping in a slow fault
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> SandboxServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
