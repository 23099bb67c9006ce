"""The dashboard's shell: an HTTP server on one configured address, and a
poller thread that asks the system for its status once a second.

Only the poller talks to the system (one Cluster handle, used from that one
thread); request threads read the history under a lock. Endpoints:

    /             the page, rendered from the latest state (render.page)
    /state.json   the latest status, the history and the rendered panels
    /metrics      every actor's metrics in the Prometheus text format
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Callable

from raftline.dashboard import render
from raftline.dashboard.history import History
from raftline.metrics import CONTENT_TYPE, exposition

POLL_SECONDS = 1.0
STATIC = {"/dashboard.js": "text/javascript; charset=utf-8", "/dashboard.css": "text/css; charset=utf-8"}
# The page loads its script and style from here and nothing from anywhere else.
SECURITY_HEADERS = {"Content-Security-Policy": "default-src 'self'", "X-Content-Type-Options": "nosniff"}


def server_class(host: str, port: int) -> type[ThreadingHTTPServer]:
    """ThreadingHTTPServer for the address family `host` resolves to (an IPv6 host needs its own)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return type("DashboardServer", (ThreadingHTTPServer,), {"address_family": family})


class Dashboard:
    """A dashboard bound to (`host`, `port`) (0: a free port); `run(status)`
    polls `status()` and serves until interrupted."""

    def __init__(self, host: str, port: int, admin: str):
        self.admin = admin
        self.history = History()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.server = server_class(host, port)((host, port), handler_for(self))
        self.poller: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def run(self, status: Callable[[], dict]) -> None:
        self.poller = threading.Thread(target=self.poll, args=(status,), name="dashboard-poller", daemon=True)
        self.poller.start()
        self.server.serve_forever()

    def close(self) -> None:
        self.stopping.set()
        self.server.server_close()
        if self.poller is not None:
            # A moment only: a status request in flight ends by its own timeout, and a daemon thread holds no exit.
            self.poller.join(timeout=1.0)

    def poll(self, status: Callable[[], dict]) -> None:
        due = time.monotonic()
        while not self.stopping.is_set():
            self.poll_once(status)
            due = max(due + POLL_SECONDS, time.monotonic())  # a slow poll is not made up for in a burst
            self.stopping.wait(due - time.monotonic())

    def poll_once(self, status: Callable[[], dict]) -> None:
        try:
            current = status()
        except Exception as error:  # whatever it is, the page says it and the next poll tries again
            with self.lock:
                self.history.failed(str(error) or type(error).__name__, time.time())
            return
        with self.lock:
            self.history.observe(current, time.monotonic(), time.time())

    def state(self) -> dict:
        with self.lock:
            state = self.history.state()
        return state | {"panels": render.panels(state)}

    def current_status(self) -> tuple[dict | None, str]:
        """The latest status, or None and why not: after a failed poll, stale
        figures would read as current to a scraper, so /metrics answers 503."""
        with self.lock:
            if self.history.error:
                return None, f"the last status poll failed: {self.history.error}"
            if self.history.status is None:
                return None, "no status yet: the first poll has not answered"
            return self.history.status, ""


def handler_for(dashboard: Dashboard) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "raftline-dashboard"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/":
                self.reply(render.page(dashboard.state(), dashboard.admin), "text/html; charset=utf-8")
            elif path == "/state.json":
                self.reply(json.dumps(dashboard.state()), "application/json")
            elif path == "/metrics":
                status, why_not = dashboard.current_status()
                if status is None:
                    self.reply(why_not + "\n", "text/plain; charset=utf-8", HTTPStatus.SERVICE_UNAVAILABLE)
                else:
                    self.reply(exposition(status), CONTENT_TYPE)
            elif path in STATIC:
                self.reply(files(__package__).joinpath(path[1:]).read_text(encoding="utf-8"), STATIC[path])
            else:
                self.reply(f"not found: {path}\n", "text/plain; charset=utf-8", HTTPStatus.NOT_FOUND)

        def reply(self, body: str, content_type: str, code: HTTPStatus = HTTPStatus.OK) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args) -> None:
            # The page polls every second: a line per request would bury the URL and any real error.
            pass

    return Handler
