"""``adsearch start --foreground``: the daemon in this process, with a live Rich display of
the same snapshot ``adsearch status`` shows. Ctrl-C asks for a warm stop, a second Ctrl-C
for a cold one (the daemon's own signal handlers)."""

from __future__ import annotations

import logging
import time
from typing import Any

from adsearch.daemon.report import build_status, render_status
from adsearch.daemon.rundir import RunDir


def run_foreground(run: RunDir, console: Any, refresh: float = 0.5, **daemon_opts: Any) -> Any:
    """Run the search of ``run`` here until it finishes or is stopped; returns the daemon.
    ``daemon_opts``: ``budget_minutes``, ``budget_trials``, ``fresh_controller`` for
    :func:`~adsearch.daemon.runner.run_daemon` (``resume``)."""
    from rich.live import Live

    from adsearch.daemon.launch import check_writable
    from adsearch.daemon.runner import run_daemon

    check_writable(run)  # before the log file below: read-only media get a clear error
    handler = logging.FileHandler(run.log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("adsearch")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    propagate, logger.propagate = logger.propagate, False  # keep log lines off the display
    last = 0.0
    try:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            def on_tick(daemon: Any) -> None:
                nonlocal last
                now = time.time()
                if now - last < refresh:
                    return
                last = now
                search = daemon.store.get_search(daemon.name)
                live.update(render_status(build_status(run, daemon.store, search)))

            daemon = run_daemon(str(run.path), on_tick=on_tick, **daemon_opts)
            live.update(_final(run))  # after shutdown: the stored state, no live slots
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
        handler.close()
    state = "failed" if daemon.fatal else "finished" if daemon.finished else "stopped"
    console.print()
    console.print(f"search {daemon.name} {state}" + (f": {daemon.fatal}" if daemon.fatal else "")
                  + f"; `adsearch status {daemon.name}` for the summary")
    return daemon


def _final(run: RunDir) -> Any:
    from adsearch.daemon.launch import load_search

    store, search = load_search(run)
    try:
        return render_status(build_status(run, store, search))
    finally:
        store.close()
