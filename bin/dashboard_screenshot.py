"""A screenshot of a search's dashboard page (the README's image), in headless Chromium.

Starts ``adsearch dashboard``'s server on a free loopback port in this process, loads
``/search/NAME`` once its script has drawn the page, and saves a PNG. By default NAME is the
newest ``make run`` search (``main-*``) under ``runs/``.

Usage::

    .venv/bin/python bin/dashboard_screenshot.py [--runs runs] [--search NAME]
        [-o docs/img/dashboard-search.png] [--width 1280] [--height 1500]

Needs Debian's ``chromium`` (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import quote

from adsearch.dashboard.data import Source
from adsearch.dashboard.serve import make


def main() -> int:
    """Parse the arguments, take the screenshot, return the exit status."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs", help="the runs directory (default: runs)")
    p.add_argument("--search", default=None, help="search name (default: newest main-*)")
    p.add_argument("-o", "--output", default="docs/img/dashboard-search.png")
    p.add_argument("--width", type=int, default=1280, help="window width in px")
    p.add_argument("--height", type=int, default=1500, help="window height in px")
    args = p.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("error: no chromium on PATH; install it (apt-get install chromium)",
              file=sys.stderr)
        return 1
    source = Source(runs=Path(args.runs))
    names = source.names()
    name = args.search or next((n for n in reversed(names) if n.startswith("main-")), None)
    if name is None or name not in names:
        print(f"error: no search {args.search or 'main-*'} under {Path(args.runs).absolute()} "
              f"(known: {', '.join(names) or 'none'}); run `make run` first, or pass --search",
              file=sys.stderr)
        return 1
    server = make(source, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    out = Path(args.output).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(
                [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                 f"--user-data-dir={profile}", "--virtual-time-budget=5000",
                 f"--window-size={args.width},{args.height}", f"--screenshot={out}",
                 f"http://127.0.0.1:{server.server_port}/search/{quote(name, safe='')}"],
                check=True, capture_output=True, timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    print(f"wrote {out} (search {name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
