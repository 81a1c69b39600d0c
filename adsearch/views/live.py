"""``adsearch start --foreground``: the daemon in this process, with a live view of its
progress. Ctrl-C asks for a warm stop, a second Ctrl-C for a cold one (the daemon's own
signal handlers).

On a terminal the view is a live Rich display of the snapshot ``adsearch status`` shows.
When the output is not a terminal (piped, logged, CI), a live display cannot redraw, so
the search prints **progress lines** instead (:class:`ProgressLines`): one per trial that
ends, one per controller update (which trials it learned from, and that the next draws
come from the new version), and a line every ``quiet`` seconds while nothing ends; then
the final status once.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from adsearch.command import adsearch_command
from adsearch.daemon.rundir import RunDir
from adsearch.views.status import build_status, render_status


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
        if not console.is_terminal:  # piped: lines as things happen, the table once at the end
            lines = ProgressLines(console)
            daemon = run_daemon(str(run.path), on_tick=lines.tick, **daemon_opts)
            lines.tick(daemon, force=True)
            console.print(_final(run))
        else:
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
                  + f"; `{adsearch_command()} status {daemon.name}` for the summary",
                  soft_wrap=True, highlight=False, markup=False)
    return daemon


class ProgressLines:
    """Progress of a foreground search as plain lines, for output that is not a terminal.

    Called after every pass of the daemon (``tick``); reads the store it writes. Each line
    starts with the seconds since the search started here. Cost per pass: a count query, and
    the latest trials and controller updates only when a count moved.

    Args:
        console: where the lines go (a Rich console; printed without markup or wrapping).
        quiet: seconds without a line after which a "still running" line is printed.
    """

    def __init__(self, console: Any, quiet: float = 30.0) -> None:
        self.console = console
        self.quiet = quiet
        self.t0 = time.time()
        self.last_line = self.t0
        self.ended = -1  # trials ended (done + failed) at the last look
        self.version = -1  # controller version last reported
        self.reported: set[int] = set()
        self.searched = 0  # search trials reported (re-check runs are not in the budget)

    def say(self, text: str) -> None:
        self.console.print(f"[{time.time() - self.t0:5.0f}s] {text}", markup=False,
                           highlight=False, soft_wrap=True)
        self.last_line = time.time()

    def tick(self, daemon: Any, force: bool = False) -> None:
        """Print what happened since the last call (``force``: look even if nothing moved)."""
        store, sid = daemon.store, daemon.search_id
        counts = store.counts(sid)
        ended = counts.get("done", 0) + counts.get("failed", 0)
        version = int(getattr(getattr(daemon, "controller", None), "version", 0) or 0)
        if ended != self.ended or force:
            self._trials(store, sid, daemon, counts)
            self.ended = ended
        if version != self.version:
            if self.version >= 0 or version > 0:
                self._updates(store, sid)
            self.version = version
        if time.time() - self.last_line >= self.quiet:
            running = sorted(c.trial_id for c in daemon.children.values())
            budget = daemon.cfg.budget_trials
            self.say(f"{len(running)} running (trial {', '.join(map(str, running)) or '-'}); "
                     f"{ended} trial(s) ended" + (f" of {budget}" if budget else ""))

    def _trials(self, store: Any, sid: int, daemon: Any, counts: dict[str, int]) -> None:
        total = sum(counts.values())
        recent = store.trials(sid, states=["done", "failed"], offset=max(0, total - 500))
        new = sorted((t for t in recent if t.id not in self.reported),
                     key=lambda t: (t.finished_at is None, t.finished_at, t.id))
        if not new:
            return
        results = {r.trial_id: r for r in store.results(sid, [t.id for t in new])}
        budget = daemon.cfg.budget_trials
        for t in new:
            self.reported.add(t.id)
            r = results.get(t.id)
            metrics = (r.metrics or {}) if r is not None else {}
            label = "re-check run" if getattr(t, "purpose", "search") == "recheck" else "trial"
            if t.state == "failed" or r is None or r.reward is None:
                what = f"failed: {(t.error or 'no error text').splitlines()[0][:200]}"
            elif metrics.get("refused"):
                what = f"refused, no child: {(t.error or '').splitlines()[0][:200]}"
            elif metrics.get("bad_pattern"):
                what = f"bad pattern: {(t.error or '').splitlines()[0][:200]}"
            elif metrics.get("cache_hit") or getattr(r, "cache_of", None):
                what = f"reward {r.reward:.4f} (reused the stored result of the same pattern)"
            else:
                cut = " (stopped early at a rung)" if metrics.get("truncated") else ""
                what = f"reward {r.reward:.4f}{cut}"
            if label == "trial":
                self.searched += 1
                of = f"; {self.searched} ended" + (f" of {budget}" if budget else "")
            else:  # not part of the trial budget
                of = ""
            self.say(f"{label} {t.id} (drawn by controller v{t.controller_version}): {what}{of}")

    def _updates(self, store: Any, sid: int) -> None:
        for ev in store.events(sid, limit=5, kinds=["controller.update"]):
            v = int(ev.data.get("version", 0))
            if v <= self.version:
                continue
            ids = list(ev.data.get("trial_ids") or [])
            mean = ev.data.get("mean_reward")
            mean_text = f", mean reward {float(mean):.4f}" if mean is not None else ""
            self.say(f"controller v{v}: learned from trials {', '.join(map(str, ids))}"
                     f"{mean_text}; trials drawn from now on come from v{v}")


def _final(run: RunDir) -> Any:
    from adsearch.daemon.launch import load_search

    store, search = load_search(run)
    try:
        return render_status(build_status(run, store, search))
    finally:
        store.close()
