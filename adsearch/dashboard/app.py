"""The dashboard's WSGI application (PEP 3333, standard library only).

Pages are one HTML shell each (``/``, ``/search/NAME``, ``/search/NAME/trial/ID``,
``/verify/NAME``, ``/compare?s=A&s=B``) that ``static/dashboard.js`` fills from the page's
JSON under ``/api/...`` and refreshes in place every few seconds (only the parts whose data
changed are redrawn: no reload, no flicker). Charts are SVG drawn by that script; every
asset is served from the package (no CDN: no network at run time).

Bad input never stops the server: an unknown search or trial is a 404 page (a 404 JSON
document under ``/api``), a store that cannot be read is a 503 whose message the page shows,
and any other error a 500 with its message.
"""

from __future__ import annotations

import html
import json
import math
import mimetypes
import sys
import traceback
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote

from adsearch.dashboard.data import NotFound, Source
from adsearch.errors import AdsearchError

#: Seconds between two refreshes of a page (the script reads it from the shell).
POLL_S = 2.0
#: Files served under /static/ (the package's ``static`` folder; nothing else is reachable).
STATIC = ("dashboard.js", "dashboard.css")

StartResponse = Callable[..., Any]


class App:
    """The WSGI callable: ``App(source)(environ, start_response)``.

    Args:
        source: Where the searches are (:class:`~adsearch.dashboard.data.Source`).
        poll_s: Seconds between two refreshes of a live page.
    """

    def __init__(self, source: Source, poll_s: float = POLL_S) -> None:
        self.source = source
        self.poll_s = poll_s

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/") or "/"
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if method not in ("GET", "HEAD"):
            return self._send(start_response, 405, "text/plain; charset=utf-8",
                              b"the dashboard is read-only: GET only\n")
        try:
            status, ctype, body = self.route(path, query)
        except Exception as exc:  # the server keeps serving whatever one request did
            traceback.print_exc(file=sys.stderr)
            status, ctype, body = self._error(path, 500, f"internal error: {exc!r}")
        return self._send(start_response, status, ctype, b"" if method == "HEAD" else body)

    # ------------------------------------------------------------------ routing
    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        """``(HTTP status, content type, body)`` of a GET of ``path``."""
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        try:
            if parts[:1] == ["api"]:
                return self._api(parts[1:], query)
            if parts[:1] == ["static"] and len(parts) == 2:
                return self._static(parts[1])
            return self._page(parts, query)
        except NotFound as exc:
            return self._error(path, 404, str(exc))
        except AdsearchError as exc:  # a store that cannot be read, and the like
            return self._error(path, 503, str(exc))

    def _api(self, parts: list[str], query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        src = self.source
        doc: Any
        if parts == ["searches"]:
            doc = src.searches()
        elif len(parts) == 2 and parts[0] == "search":
            doc = src.status(parts[1], top_k=_int(query, "top_k", 5))
        elif len(parts) == 3 and parts[0] == "search" and parts[2] == "extra":
            doc = src.search_extra(parts[1])
        elif len(parts) in (4, 5) and parts[0] == "search" and parts[2] == "trial":
            trial = _trial_id(parts[3])
            if len(parts) == 5 and parts[4] != "extra":
                raise NotFound(f"no API page /api/{'/'.join(parts)}")
            doc = (src.trial(parts[1], trial) if len(parts) == 4
                   else src.trial_extra(parts[1], trial))
        elif len(parts) == 2 and parts[0] == "verify":
            doc = src.verify(parts[1])
        elif parts == ["compare"]:
            doc = src.compare(query.get("s", []))
        else:
            raise NotFound(f"no API page /api/{'/'.join(parts)} (see docs/dashboard.md)")
        return 200, "application/json", to_json(doc).encode()

    def _static(self, name: str) -> tuple[int, str, bytes]:
        if name not in STATIC:
            raise NotFound(f"no static file {name!r}")
        body = resources.files("adsearch.dashboard").joinpath("static").joinpath(name).read_bytes()
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return 200, f"{ctype}; charset=utf-8", body

    def _page(self, parts: list[str], query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        src = self.source
        if not parts:
            return 200, HTML, self._shell("searches", "searches", {})
        if len(parts) == 2 and parts[0] == "search":
            src.require(parts[1])
            return 200, HTML, self._shell(parts[1], "search", {"name": parts[1]})
        if len(parts) == 4 and parts[0] == "search" and parts[2] == "trial":
            src.trial(parts[1], _trial_id(parts[3]))  # 404 for an unknown trial
            return 200, HTML, self._shell(f"{parts[1]}: trial {parts[3]}", "trial",
                                          {"name": parts[1], "trial": parts[3]})
        if len(parts) == 2 and parts[0] == "verify":
            src.verify(parts[1])  # 404 for a search that is no verify search
            return 200, HTML, self._shell(f"verify {parts[1]}", "verify", {"name": parts[1]})
        if parts == ["compare"]:
            names = query.get("s", [])
            for n in names:
                src.require(n)
            return 200, HTML, self._shell("compare " + ", ".join(names) if names else "compare",
                                          "compare", {"names": json.dumps(names)})
        raise NotFound(f"no page /{'/'.join(parts)}")

    # ------------------------------------------------------------------ bodies
    def _shell(self, title: str, page: str, data: dict[str, str]) -> bytes:
        attrs = " ".join(f'data-{k}="{html.escape(v)}"' for k, v in data.items())
        return SHELL.format(title=html.escape(title), page=page, attrs=attrs,
                            poll_ms=int(self.poll_s * 1000),
                            where=html.escape(self.source.describe())).encode()

    def _error(self, path: str, status: int, message: str) -> tuple[int, str, bytes]:
        if path.startswith("/api/") or path == "/api":
            return status, "application/json", to_json({"error": message,
                                                        "status": status}).encode()
        title = {404: "not found", 503: "store unreadable"}.get(status, "error")
        body = ERROR_PAGE.format(status=status, title=title, message=html.escape(message),
                                 where=html.escape(self.source.describe()))
        return status, HTML, body.encode()

    @staticmethod
    def _send(start_response: StartResponse, status: int, ctype: str,
              body: bytes) -> list[bytes]:
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500:
                  "Internal Server Error", 503: "Service Unavailable"}.get(status, "Error")
        start_response(f"{status} {reason}", [("Content-Type", ctype),
                                              ("Content-Length", str(len(body))),
                                              ("Cache-Control", "no-store")])
        return [body]


def to_json(doc: Any) -> str:
    """``doc`` as JSON a browser parses: NaN and infinities become null (``status --json``
    writes them as Python does; ``JSON.parse`` refuses them); other objects as ``str``."""
    return json.dumps(_finite(doc), default=str, allow_nan=False)


def _finite(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def _int(query: dict[str, list[str]], key: str, default: int) -> int:
    try:
        return max(1, int(query.get(key, [default])[0]))
    except ValueError:
        return default


def _trial_id(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise NotFound(f"{raw!r} is not a trial id (an integer)") from None


HTML = "text/html; charset=utf-8"

SHELL = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - adsearch dashboard</title>
<link rel="stylesheet" href="/static/dashboard.css">
</head><body>
<header><a class="brand" href="/">adsearch dashboard</a>
<span class="where">read-only view of {where}</span>
<span id="live" class="live" title="refreshes every few seconds"></span></header>
<div id="banner" class="banner" hidden></div>
<main id="app" data-page="{page}" data-poll-ms="{poll_ms}" {attrs}></main>
<script src="/static/dashboard.js"></script>
</body></html>
"""

ERROR_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{status} {title} - adsearch dashboard</title>
<link rel="stylesheet" href="/static/dashboard.css">
</head><body>
<header><a class="brand" href="/">adsearch dashboard</a>
<span class="where">read-only view of {where}</span></header>
<main><h1 id="error-title">{status}: {title}</h1><p id="error-message">{message}</p>
<p><a href="/">all searches</a></p></main>
</body></html>
"""
