"""``adsearch status|list|show|export|plot``: read searches, never write them.

Each command finds its search once, through :func:`adsearch.daemon.launch.open_search`: by
NAME or ``--run-dir`` through the run directory, or by ``--store URL --search NAME`` straight
from a store (docs/cli.md). None of them imports torch. Errors become ``error: ...`` on
stderr and exit status 1 at the boundary in :mod:`adsearch.cli.main`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from adsearch.cli.search_cmd import NAME_ARG, RUN_DIR, console
from adsearch.errors import AdsearchError, ConfigError

EXPORT_OUT = typer.Option(None, "-o", "--output", help="Output file (K > 1: FILE-1.json, ...).")
PLOT_NAMES = typer.Argument(None, help="Searches to draw on one plot (default: all).")
READ_STORE = typer.Option(None, "--store", help="With --search: read the search straight from this store URL, with no run directory (default: $ADSEARCH_STORE).")
READ_SEARCH = typer.Option(None, "--search", help="Read this search from --store (or $ADSEARCH_STORE) instead of a run directory, e.g. a `db copy --remap-ids` copy.")
PLOT_SEARCH = typer.Option(None, "--search", help="Draw this search of --store (or $ADSEARCH_STORE), with no run directory (repeat; with NAMES too).")
SHOW_SEARCH = typer.Option(None, "--search", "-s", help="With --store (or $ADSEARCH_STORE): read this search from the store, with no run directory. Without a store: the old spelling of NAME.")
PLOT_OUT = typer.Option(Path("search-rewards.png"), "-o", "--output", help="PNG file.")


def status(
    name: str = NAME_ARG,
    run_dir: str = RUN_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print the snapshot as JSON (for scripts)."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh until the search ends (or Ctrl-C)."),
    interval: float = typer.Option(2.0, "--interval", help="Seconds between refreshes with --watch."),
    top_k: int = typer.Option(5, "--top-k", help="Rows of the top table."),
    store_url: str = READ_STORE,
    search_name: str = READ_SEARCH,
) -> None:
    """Summary, slots and running trials, top-k, reward trend, controller, and why work waits."""
    from adsearch.daemon.launch import open_search
    from adsearch.views.status import build_status, render_status

    if top_k < 1:
        raise ConfigError(f"--top-k: invalid value {top_k}; use an integer >= 1 (rows of the "
                          "top table)")
    if not interval > 0:
        raise ConfigError(f"--interval: invalid value {interval:g}; use a number of seconds > 0")
    run, store, search = open_search(name, run_dir, store_url, search_name)
    try:
        def snap() -> dict[str, Any]:
            return build_status(run, store, store.get_search(search.name), top_k=top_k)

        if as_json:
            typer.echo(json.dumps(snap(), default=str))
            return
        if not watch:
            console.print(render_status(snap()))
            return
        from rich.live import Live

        current = snap()
        with Live(render_status(current), console=console, refresh_per_second=4) as live:
            try:
                while not _search_ended(current):
                    time.sleep(interval)
                    current = snap()
                    live.update(render_status(current))
            except KeyboardInterrupt:
                return
        ended = ("no daemon runs it" if current["daemon"]["alive"] is False
                 else "the store says it ended")
        console.print(f"search {search.name} is {current['state']} and {ended}; watch ended",
                      highlight=False)
    finally:
        store.close()


def _search_ended(snap: dict[str, Any]) -> bool:
    """``status --watch`` stops once no daemon runs the search (it ended, was stopped or died):
    nothing would change until `resume`. Read from the store alone (no run directory, so no
    daemon state): once the store calls it finished, stopped or failed."""
    alive = snap["daemon"]["alive"]
    if alive is None:
        return snap["stored_state"] in ("finished", "stopped", "failed")
    return not alive


def list_searches(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list (shape: docs/cli.md)."),
    store_url: str = typer.Option(None, "--store", help="List the searches of this store URL instead (no run directories: daemon state unknown)."),
) -> None:
    """List the searches under ./runs (or $ADSEARCH_RUNS) with their state and best reward."""
    from rich.table import Table

    from adsearch.daemon.launch import known_searches, runs_root
    from adsearch.store import Store
    from adsearch.views.status import NO_RUN_DIR

    shared = Store(store_url, readonly=True) if store_url is not None else None
    try:
        names = (known_searches() if shared is None else
                 [s.name for s in shared.list_searches()])
        rows = [_list_row(n, shared) for n in names]
    finally:
        if shared is not None:
            shared.close()
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not names:
        where = (f"in {shared.url}" if shared is not None
                 else f"under {runs_root().absolute()}")
        console.print(f"no searches {where}; start one with `adsearch start`")
        return
    t = Table()
    # the name is what a user copies: never wrapped or cut (the other columns give way)
    t.add_column("search", no_wrap=True, min_width=max(len(n) for n in names))
    for col in ("state", "daemon", "task", "controller", "trials", "done", "best"):
        t.add_column(col)
    for row in rows:
        if row["error"] is not None:
            t.add_row(row["search"], "[red]unreadable[/]", *["-"] * 6)
            continue
        daemon = (f"pid {row['daemon_pid']}" if row["daemon_pid"] else
                  "unknown" if shared is not None else "-")
        t.add_row(row["search"], row["state"], daemon,
                  row["task"] or "?", row["controller"] or "?", str(row["trials"]), str(row["done"]),
                  f"{row['best']['reward']:.4f}" if row["best"] else "-")
    console.print(t)
    if shared is not None:
        console.print(f"{NO_RUN_DIR} (states as the store {shared.url} has them)",
                      highlight=False, soft_wrap=True)
    for row in rows:
        if row["error"] is not None:
            console.print(f"unreadable {escape(row['search'] + ': ' + row['error'])}", soft_wrap=True,
                          highlight=False)


def _list_row(n: str, shared: Any) -> dict[str, Any]:
    """One row of ``list``: search ``n`` under the runs root (``shared`` None) or in the open
    store ``shared`` (no run directory: no daemon pid, and the state as stored)."""
    from adsearch.daemon.launch import load_search, runs_root
    from adsearch.daemon.rundir import RunDir, shown_state

    run = RunDir(runs_root() / n) if shared is None else None
    try:  # one corrupt search must not hide the others
        store, search = load_search(run) if run is not None else (shared, shared.get_search(n))
        try:
            counts = store.counts(search.id)
            top = store.top_trials(search.id, 1, full_only=True, succeeded_only=True,
                                   purposes=("search", "enqueued"))  # not re-check runs
        finally:
            if run is not None:
                store.close()
    except AdsearchError as exc:
        return {"search": n, "state": "unreadable", "daemon_pid": None, "task": None,
                "controller": None, "trials": None, "done": None, "best": None,
                "error": str(exc)}
    cfg = search.config
    pid = run.daemon_pid() if run is not None else None
    return {"search": n,
            "state": shown_state(search.state, pid is not None) if run is not None else search.state,
            "daemon_pid": pid,
            "task": cfg.get("task"), "controller": cfg.get("controller"),
            "trials": sum(counts.values()), "done": counts.get("done", 0),
            "best": ({"trial_id": top[0][0].id, "reward": top[0][1].reward} if top else None),
            "error": None}


SHOW_ARGS = typer.Argument(..., metavar="[NAME] TRIAL", help="Search name (default: the only one) and trial id.")


def _placements(store: Any, search_id: int, trial_id: int) -> list[dict[str, Any]]:
    """Where ``adsearch worker`` processes ran the trial: one dict per attempt with ``attempt``,
    ``host``, ``owner``, ``slot`` and ``log`` (a path on that host). Only a PostgreSQL store
    serves workers, so other stores have none."""
    if not store.url.startswith("postgresql"):
        return []
    events = store.events(search_id, limit=1_000_000, kinds=["trial.placed"])
    keys = ("attempt", "host", "owner", "slot", "log")
    return [{k: e.data.get(k) for k in keys} for e in events if e.data.get("trial_id") == trial_id]


def _name_and_trial(args: list[str], search: str | None) -> tuple[str | None, int]:
    """``show [NAME] TRIAL``: the optional search name first, as in every other command."""
    if not 1 <= len(args) <= 2:
        raise ConfigError(f"show takes [NAME] TRIAL, got {len(args)} argument(s); e.g. "
                          "`adsearch show mysearch 12`")
    if len(args) == 2 and search is not None:
        raise ConfigError("give the search once: `adsearch show NAME TRIAL` (-s is its old spelling)")
    name = args[0] if len(args) == 2 else search
    try:
        return name, int(args[-1])
    except ValueError:
        raise ConfigError(f"TRIAL: {args[-1]!r} is not a trial id; give an integer, e.g. "
                          "`adsearch show NAME 12`") from None


def show(
    args: list[str] = SHOW_ARGS,
    search_opt: str = SHOW_SEARCH,
    run_dir: str = RUN_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print JSON (shape: docs/cli.md)."),
    store_url: str = READ_STORE,
) -> None:
    """One trial: state, result, the pattern drawn, the curve and the logs."""
    import os

    from adsearch.daemon.launch import open_search
    from adsearch.errors import StoreError
    from adsearch.patterns import SearchSpace
    from adsearch.patterns.mapsides import search_sides

    # --search names the store's search when a store is given (--store or $ADSEARCH_STORE);
    # without one it is the old spelling of NAME (the run directory's search)
    from_store = search_opt is not None and bool(store_url or os.environ.get("ADSEARCH_STORE"))
    name, trial = _name_and_trial(args, None if from_store else search_opt)
    run, store, search = open_search(name, run_dir, store_url,
                                     search_opt if from_store else None)
    space = SearchSpace.from_name(search.config.get("space") or "")
    try:
        rec = store.get_trial(trial)
        if rec.search_id != search.id:
            raise StoreError(f"trial {trial} belongs to another search than {search.name!r}")
        results = store.results(search.id, [trial])
        placed = _placements(store, search.id, trial)
        # each site's map: recorded for the search (issue 20), else the space's defaults
        sides = search_sides(store, search.id, space, results[0] if results else None)
    finally:
        store.close()
    logs = sorted(str(p) for p in run.trial_dir(trial).glob("attempt-*.log")) if run else []
    local = {Path(p).name for p in logs}
    logs += [f"{p['host']}:{p['log']}" for p in placed if Path(p["log"]).name not in local]
    doc = {"search": search.name, "run_dir": str(run.path) if run else None,
           "trial": rec.to_dict(),
           "result": results[0].to_dict() if results else None, "logs": logs,
           # the reward the controller learned from (adsearch.reward); None until an update
           "learned_reward": results[0].learned_reward if results else None,
           "placements": placed, "site_maps": sides.to_dict()}
    if as_json:
        typer.echo(json.dumps(doc, default=str))
        return
    from adsearch.cli.show_view import render_trial

    console.print(render_trial(doc, space), highlight=False, soft_wrap=True)


def export(
    name: str = NAME_ARG,
    run_dir: str = RUN_DIR,
    best: bool = typer.Option(True, "--best", hidden=True, help="Accepted for old scripts: export always writes the best trial(s)."),
    top_k: int = typer.Option(1, "--top-k", help="Export the K best trials."),
    output: Path = EXPORT_OUT,
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON (shape: docs/cli.md)."),
    store_url: str = READ_STORE,
    search_name: str = READ_SEARCH,
) -> None:
    """Write the best patterns as PatternSet files for `adsearch train` and adsearch.ops.
    Ranked on the re-check mean over seeds where the search re-checked them (docs/cli.md)."""
    from adsearch.daemon.config import SearchConfig
    from adsearch.daemon.launch import open_search
    from adsearch.daemon.recheck import ranking
    from adsearch.patterns import (
        PatternSet,
        Provenance,
        SearchSpace,
        decode_patterns,
        load_patternset,
        save_patternset,
    )

    del best  # the only mode: `--best` is still accepted, and changes nothing
    if top_k < 1:
        raise ConfigError(f"--top-k: invalid value {top_k}; use an integer >= 1")
    from adsearch.patterns.mapsides import as_provenance, search_sides

    _, store, search = open_search(name, run_dir, store_url, search_name)
    space = SearchSpace.from_name(search.config.get("space") or "")
    try:
        ranked = ranking(store, search.id, SearchConfig.from_dict(search.config), top_k)
        top = ranked.patterns
        n_bad, last_bad = store.bad_patterns(search.id) if not top else (0, None)
        # each file carries the maps its sites were searched at (issue 20): `pattern show`
        own = ({r.trial_id: r for r in store.results(search.id, [t.trial_id for t in top])}
               if top else {})
        maps = {t.trial_id: as_provenance(search_sides(store, search.id, space,
                                                       own.get(t.trial_id))) for t in top}
    finally:
        store.close()
    if not top and n_bad:
        raise ConfigError(
            f"search {search.name!r} has no successful trial: all {n_bad} finished trial(s) "
            f"failed (last error: {(last_bad or '?').splitlines()[0][:200]}); nothing to export. "
            f"See `adsearch status {search.name}` and the trial logs")
    if not top:
        raise ConfigError(f"search {search.name!r} has no finished trial yet; nothing to export")
    base = output or Path(f"{search.name}-best.json")
    paths = []
    if not as_json:
        for w in ranked.warnings:
            console.print(f"warning: {w}", style="yellow", highlight=False, soft_wrap=True)
    for i, score in enumerate(top, 1):
        patterns = decode_patterns(score.pattern, space)
        chosen = "recheck mean" if score.rechecked else "single value"
        recheck = {"selected_on": chosen, **score.to_dict()} if score.rechecked else None
        ps = PatternSet(space, patterns, Provenance(search=search.name, trial_id=score.trial_id,
                                                    reward=score.reward, recheck=recheck,
                                                    site_maps=maps.get(score.trial_id)))
        path = base if top_k == 1 else base.with_name(f"{base.stem}-{i}{base.suffix or '.json'}")
        if path.is_dir():
            raise ConfigError(f"-o {path}: is a directory; give a file name such as {path}/best.json")
        try:
            save_patternset(ps, path)
        except OSError as exc:
            raise ConfigError(f"-o {path}: cannot write it ({exc.strerror}); choose a writable "
                              "file path") from None
        load_patternset(path)  # read back: what we wrote is what `adsearch train` reads
        paths.append({"trial_id": score.trial_id, "reward": score.reward, "path": str(path),
                      "selected_on": chosen, "rechecked": score.rechecked,
                      "mean": score.mean, "n": score.n,
                      "seeds": [r.seed for r in score.runs],
                      "values": [r.reward for r in score.runs]})
        if not as_json:
            how = (f"re-check mean {score.mean:.4f} over {score.n} seeds "
                   f"({', '.join(f'{r.reward:.4f}' for r in score.runs)}; its own "
                   f"{score.reward:.4f})" if score.rechecked
                   else f"reward {score.reward:.4f}, one seed, not re-checked")
            console.print(f"trial {score.trial_id} ({how}) -> {path}", highlight=False,
                          soft_wrap=True)
    if as_json:
        typer.echo(json.dumps({"search": search.name, "space": space.name,
                               "selected_on": "recheck mean" if ranked.on_mean else "single value",
                               "warnings": ranked.warnings, "written": paths}))


def plot(
    names: list[str] = PLOT_NAMES,
    output: Path = PLOT_OUT,
    store_url: str = READ_STORE,
    search_names: list[str] = PLOT_SEARCH,
) -> None:
    """Plot reward over the search (best so far and batch mean), several searches at once."""
    from adsearch.daemon.launch import known_searches, open_search
    from adsearch.views.plot import plot_searches

    if store_url is not None and not search_names:
        open_search(None, None, store_url, None)  # raises: --store needs --search
    chosen = names or ([] if search_names else known_searches())
    if not chosen and not search_names:
        raise ConfigError("no searches to plot; start one with `adsearch start`")
    opened: list[tuple[Any, Any]] = []
    try:
        for n in chosen:
            opened.append(open_search(n, None)[1:])
        for s in search_names or []:
            opened.append(open_search(None, None, store_url, s)[1:])
        plot_searches(opened, output)
    finally:
        for store, _ in opened:
            store.close()
    console.print(f"wrote {output}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    for fn, cmd in ((status, "status"), (list_searches, "list"), (show, "show"),
                    (export, "export"), (plot, "plot")):
        app.command(cmd)(fn)
