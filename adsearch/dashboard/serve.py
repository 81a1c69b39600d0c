"""Serve the dashboard: the standard library's WSGI server, one thread per request.

``wsgiref`` is enough for a page a few people poll every few seconds, and keeps the
dashboard free of dependencies (it runs in any install, offline). A request never waits on
another: each runs in its own thread (:class:`socketserver.ThreadingMixIn`), so a slow
store read does not freeze the other pages.
"""

from __future__ import annotations

import socketserver
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from adsearch.dashboard.app import App
from adsearch.dashboard.data import Source
from adsearch.errors import ConfigError

LOOPBACK = ("127.0.0.1", "::1", "localhost")


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """A WSGI server that handles each request in a daemon thread."""

    daemon_threads = True
    allow_reuse_address = True


class QuietHandler(WSGIRequestHandler):
    """No line per request (a page polls every few seconds); errors still go to stderr."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if str(code).startswith("5"):
            super().log_request(code, size)


def make(source: Source, host: str = "127.0.0.1", port: int = 8080,
         poll_s: float | None = None) -> ThreadingWSGIServer:
    """A bound server (``port`` 0: a free port; read it from ``server.server_port``).

    Raises:
        ConfigError: The address cannot be bound (in use, or not this host's).
    """
    app = App(source) if poll_s is None else App(source, poll_s=poll_s)
    try:
        server: Any = make_server(host, port, app, server_class=ThreadingWSGIServer,
                                  handler_class=QuietHandler)
    except OSError as exc:
        raise ConfigError(f"cannot serve on {host}:{port} ({exc.strerror or exc}); choose "
                          "another with --port (or --host)") from None
    return server  # type: ignore[no-any-return]


def exposure(host: str) -> str:
    """One line saying who can reach the dashboard at ``host``."""
    if host in LOOPBACK:
        return ("bound to loopback: only this machine can open it (pass --host 0.0.0.0 to "
                "share it on the network; it has no login)")
    return (f"bound to {host}: anyone who can reach this host on the network can read every "
            "search it shows (there is no login)")
