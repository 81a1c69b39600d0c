"""``adsearch dashboard``: a live, read-only web page for searches (issue 24).

- :mod:`adsearch.dashboard.data` reads the searches (run directories or one store, always
  read-only) and builds every page's JSON document; no web code.
- :mod:`adsearch.dashboard.app` is the WSGI application: pages, ``/api/...``, static files.
- :mod:`adsearch.dashboard.serve` serves it (the standard library's ``wsgiref``, one thread
  per request) and :mod:`adsearch.dashboard.command` registers the CLI command.

Neither torch nor any web framework is imported by ``status``, ``list`` or ``--help``: the
command module imports the rest only when the command runs. See docs/dashboard.md.
"""
