"""``adsearch start|status|stop|resume|list|show|export|plot``: run and watch searches.

Each command parses its input, calls :mod:`adsearch.daemon` and renders the result. The
light commands (status, list, show, export) never import torch: the daemon, controller and
tasks are imported inside ``start``/``resume`` only. Errors become ``error: ...`` on stderr
and exit status 1 at the boundary in :mod:`adsearch.cli.main`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from adsearch.errors import AdsearchError, ConfigError, DaemonError

console = Console(emoji=False)  # "--task mod:X:" must not print an emoji

RUN_DIR = typer.Option(None, "--run-dir", help="Run directory (default: ./runs/NAME, or $ADSEARCH_RUNS/NAME).")
NAME_ARG = typer.Argument(None, help="Search name (default: the only search under ./runs).")
EXPORT_OUT = typer.Option(None, "-o", "--output", help="Output file (K > 1: FILE-1.json, ...).")
PLOT_NAMES = typer.Argument(None, help="Searches to draw on one plot (default: all).")
READ_STORE = typer.Option(None, "--store", help="With --search: read the search straight from this store URL, with no run directory (default: $ADSEARCH_STORE).")
READ_SEARCH = typer.Option(None, "--search", help="Read this search from --store (or $ADSEARCH_STORE) instead of a run directory, e.g. a `db copy --remap-ids` copy.")
PLOT_SEARCH = typer.Option(None, "--search", help="Draw this search of --store (or $ADSEARCH_STORE), with no run directory (repeat; with NAMES too).")
PLOT_OUT = typer.Option(Path("search-rewards.png"), "-o", "--output", help="PNG file.")


def _gpus(text: str | None) -> list[str] | None:
    if text is None:
        return None
    ids = [t.strip() for t in text.split(",") if t.strip()]
    if not ids:
        raise ConfigError(f"--gpus: invalid value {text!r}; give GPU ids such as 0,2")
    return ids


def _no_constant(word: str) -> Any:
    """JSON has no NaN or Infinity (Python's json reads them; the store could not write them)."""
    raise ConfigError(f"--task-config: {word} is not a JSON number; give a finite number")


def _task_config(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--task-config: invalid JSON ({exc}); e.g. '{{\"sleep\": 0.5}}'") from None
    if not isinstance(data, dict):
        raise ConfigError("--task-config: expected a JSON object, e.g. '{\"epochs\": 2}'")
    return data


def _task_and_config(task: str | None, task_config: str | None, script: str | None,
                     workdir: str | None, space: str, data: str | None) -> tuple[str, dict[str, Any]]:
    """The task name and task config overrides of ``start``: ``--task``, or script mode."""
    overrides = _task_config(task_config)
    if script is None:
        if workdir is not None:
            raise ConfigError("--workdir is for script mode; give it with --script CMD")
        if task is None:
            raise ConfigError("start: give --task NAME (a built-in task) or --script CMD (your "
                              "own training script)")
        return task, overrides
    if task is not None:
        raise ConfigError(f"--script and --task {task} exclude each other: --script runs your "
                          "command as each child; drop one of them")
    if data is not None:
        raise ConfigError("--data is for built-in tasks; with --script pass your data path in "
                          "the command, e.g. --script 'python train.py --data DIR'")
    if not space:
        raise ConfigError("--script needs --space: the space of the dropout sites your script "
                          "attaches, e.g. --space conv-4 "
                          "(adsearch.sites.find_sites lists them)")
    workdir_path = Path(workdir or ".").expanduser()
    return "script", {**overrides, "command": script, "workdir": str(workdir_path.absolute()),
                      "space": space}


def start(
    task: str = typer.Option(None, "--task", help="Task: cifar10, imagenet, wikitext2, ptb, translation, synthetic, or a plug-in: package.module:ClassName or an installed entry point (docs/tasks.md); or --script."),
    name: str = typer.Option(None, "--name", help="Search name (default: TASK-CONTROLLER-SEED)."),
    data: str = typer.Option(None, "--data", help="Data path (default: the task's own; cifar10: the embedded sample)."),
    space: str = typer.Option("", "--space", help="Search space, e.g. conv-3 (default: the task's)."),
    task_config: str = typer.Option(None, "--task-config", help="Task config overrides as JSON."),
    budget_trials: int = typer.Option(None, "--budget-trials", help="Stop after this many trials."),
    budget_minutes: float = typer.Option(None, "--budget-minutes", help="Stop after this many minutes of daemon run time."),
    gpus: str = typer.Option(None, "--gpus", help="GPU ids, e.g. 0,2 (default: CUDA_VISIBLE_DEVICES or all)."),
    slots_per_gpu: int = typer.Option(1, "--slots-per-gpu", help="Children at once per GPU."),
    workers: int = typer.Option(None, "--workers", help="CPU mode: children at once (threads split between them)."),
    store: str = typer.Option(None, "--store", envvar="ADSEARCH_STORE", help="Store URL (default: $ADSEARCH_STORE, else sqlite in the run directory)."),
    run_dir: str = RUN_DIR,
    controller: str = typer.Option("transformer", "--controller", help="transformer or random (the baseline)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Finished trials per controller update."),
    lookahead: int = typer.Option(None, "--lookahead", help="Trials queued ahead of the slots (default: one per slot)."),
    child_epochs: float = typer.Option(None, "--child-epochs", help="Child training epochs (default: the task's)."),
    child_steps: int = typer.Option(None, "--child-steps", help="Child optimizer steps."),
    child_seconds: float = typer.Option(None, "--child-seconds", help="Child training seconds."),
    child_timeout: float = typer.Option(None, "--child-timeout", help="Kill a child after this many seconds (then retry)."),
    prune_at_epoch: float = typer.Option(None, "--prune-at-epoch", help="Early stopping: a child whose validation reward at this epoch is below --prune-quantile of earlier children stops there (its reward is marked truncated)."),
    prune_quantile: float = typer.Option(0.25, "--prune-quantile", help="With --prune-at-epoch: stop children below this quantile."),
    # -- early stopping by successive halving (issue 14 §1, adsearch.daemon.pruning)
    scheduler: str = typer.Option(None, "--scheduler", help="asha: asynchronous successive halving over rungs --min-epochs, x eta, ... up to --max-epochs."),
    min_epochs: float = typer.Option(None, "--min-epochs", help="With --scheduler asha: the first rung, in epochs (fractions allowed)."),
    max_epochs: float = typer.Option(None, "--max-epochs", help="With --scheduler asha: the full budget (top rung), in epochs."),
    eta: float = typer.Option(3.0, "--eta", help="With --scheduler asha: rungs grow by eta; the top 1/eta at each rung go on (> 1)."),
    max_attempts: int = typer.Option(3, "--max-attempts", help="Runs of a trial whose child died before it is failed."),
    failure_reward: float = typer.Option(0.0, "--failure-reward", help="Reward of a bad pattern (child raised or diverged)."),
    seed: int = typer.Option(0, "--seed", help="Controller seed."),
    child_seed: int = typer.Option(None, "--child-seed", help="Train every child with this seed (same init and data order: rewards differ by pattern, not luck). Default: a fresh seed per trial."),
    foreground: bool = typer.Option(False, "--foreground", "-f", help="Run here with a live display (Ctrl-C: warm stop, twice: cold)."),
    executor: str = typer.Option("local", "--executor", help="local (subprocesses) or ray (Ray tasks; see docs/scale-out.md)."),
    ray_address: str = typer.Option(None, "--ray-address", help="Ray cluster address, e.g. auto or HOST:6379 (default: a local Ray)."),
    ray_gpus: float = typer.Option(0.0, "--ray-gpus", help="With --executor ray: GPUs per child (fractions allowed)."),
    # script mode (docs/script-mode.md): the user's own command is each child
    script: str = typer.Option(None, "--script", help="Run this command as each child (your own training script using adsearch.trial), e.g. 'python train.py --epochs 3'; needs --space."),
    workdir: str = typer.Option(None, "--workdir", help="With --script: the directory the command runs in (default: the current one)."),
    # the failure circuit breaker (docs/daemon.md, "Failures")
    max_consecutive_failures: int = typer.Option(10, "--max-consecutive-failures", help="Stop the search as failed after this many trials in a row failed (0: off)."),
    max_failure_share: float = typer.Option(0.8, "--max-failure-share", help="Stop the search as failed when more than this share of the last 20 trials failed (1: off)."),
) -> None:
    """Start a new search (in the background unless --foreground)."""
    from adsearch.daemon.config import SearchConfig
    from adsearch.daemon.launch import create_search, find_run_dir, runs_root
    from adsearch.daemon.rundir import RunDir

    task, overrides = _task_and_config(task, task_config, script, workdir, space, data)
    if name is None:  # an empty --name is refused by validate(), not replaced
        # a plug-in module:Class is named by its class (a name may hold no ':')
        name = f"{task.rsplit(':', 1)[-1]}-{controller}-{seed}"
    cfg = SearchConfig(
        name=name, task=task, task_config=overrides, space=space,
        controller=controller, batch_size=batch_size, lookahead=lookahead,
        budget_trials=budget_trials, budget_minutes=budget_minutes, gpus=_gpus(gpus),
        slots_per_gpu=slots_per_gpu, workers=workers, child_epochs=child_epochs,
        child_steps=child_steps, child_seconds=child_seconds, child_timeout=child_timeout, seed=seed,
        child_seed=child_seed, prune_epoch=prune_at_epoch, prune_quantile=prune_quantile,
        scheduler=scheduler, min_epochs=min_epochs, max_epochs=max_epochs, eta=eta,
        max_attempts=max_attempts, failure_reward=failure_reward, data=data,
        executor=executor, ray_address=ray_address, ray_gpus=ray_gpus,
        max_consecutive_failures=max_consecutive_failures or None,
        max_failure_share=None if max_failure_share == 1 else max_failure_share,
    )
    run = RunDir(run_dir) if run_dir else RunDir(runs_root() / name)
    steps = _Steps()
    create_search(cfg, run, store, progress=steps)
    console.print(f"created search [bold]{name}[/] in {run.path}")
    _launch(find_run_dir(None, str(run.path)), foreground, steps)


class _Steps:
    """Prints one line per step of `start`/`resume` as it begins, with the seconds since
    the command began, so a slow start says what it is doing."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        console.print(f"{time.perf_counter() - self.t0:5.1f}s {msg} ...", highlight=False,
                      soft_wrap=True)


def _launch(run: Any, foreground: bool, steps: _Steps | None = None, **daemon_opts: Any) -> None:
    """Start the daemon of ``run``. ``daemon_opts`` (resume: ``budget_minutes``,
    ``budget_trials``, ``fresh_controller``) are written by the daemon once its start-up
    checks passed, so a refused start writes nothing."""
    from adsearch.daemon.launch import runs_root, spawn_detached

    if not foreground:
        (steps or _Steps())("starting the daemon and waiting until it is ready")
        pid = spawn_detached(run, **daemon_opts)
        name = run.identity()["name"]
        # name the run directory in the hints unless the default lookup finds it
        where = "" if Path(run.path).resolve() == (runs_root() / name).resolve() else f" --run-dir {run.path}"
        console.print(f"daemon pid {pid} running; watch: [bold]adsearch status {name}{where} --watch[/], "
                      f"stop: adsearch stop {name}{where}, log: {run.log_file}")
        return
    from adsearch.daemon.live import run_foreground

    daemon = run_foreground(run, console, **daemon_opts)
    if getattr(daemon, "fatal", None):  # the final view above says why; scripts see exit 1
        raise DaemonError(f"search {daemon.name!r} failed: {daemon.fatal}")


def resume(
    name: str = NAME_ARG,
    run_dir: str = RUN_DIR,
    foreground: bool = typer.Option(False, "--foreground", "-f", help="Run here with a live display."),
    budget_minutes: float = typer.Option(None, "--budget-minutes", help="New total budget in minutes of daemon run time (more than already used)."),
    budget_trials: int = typer.Option(None, "--budget-trials", help="New total budget in trials (more than already drawn)."),
    fresh_controller: bool = typer.Option(False, "--fresh-controller", help="Start a new controller and feed it every stored result again (when no controller checkpoint is readable); the old checkpoint files are moved aside."),
) -> None:
    """Continue a stopped or crashed search from its store and controller checkpoint;
    --budget-minutes/--budget-trials set a new total budget (a finished search then continues)."""
    from adsearch.daemon.launch import find_run_dir, load_search, set_budget

    run = find_run_dir(name, run_dir)
    store, search = load_search(run)
    store.close()
    if budget_minutes is not None or budget_trials is not None:
        message = set_budget(run, minutes=budget_minutes, trials=budget_trials, check_only=True)
        _launch(run, foreground, budget_minutes=budget_minutes, budget_trials=budget_trials,
                fresh_controller=fresh_controller)
        if not foreground:
            console.print(message)
        return
    if search.state == "finished":
        raise ConfigError(f"search {search.name!r} is finished (its budget is spent); give it "
                          f"more with `adsearch resume {search.name} --budget-minutes M` or "
                          "`--budget-trials N`, or start a new search with `adsearch start`")
    _launch(run, foreground, fresh_controller=fresh_controller)


def stop(
    name: str = NAME_ARG,
    run_dir: str = RUN_DIR,
    now: bool = typer.Option(False, "--now", help="Cold stop: kill running children, requeue their trials."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until the daemon has exited."),
    timeout: float = typer.Option(600.0, "--timeout", help="Seconds to wait."),
) -> None:
    """Stop a search's daemon: warm (running trials finish) or cold (--now). A search with no
    running daemon is left as it is (exit status 0)."""
    from adsearch.daemon.launch import find_run_dir, load_search, stop_daemon
    from adsearch.daemon.rundir import shown_state

    run = find_run_dir(name, run_dir)
    pid, exited = stop_daemon(run, cold=now, wait=wait, timeout=timeout)
    kind = "cold" if now else "warm"
    if pid is None:  # nothing runs: not an error, so `stop` is safe in scripts (exit 0)
        store, search = load_search(run)
        store.close()
        state = shown_state(search.state, False)
        hint = f"; continue it with `adsearch resume {search.name}`" if state != "finished" else ""
        console.print(f"search {search.name!r} is not running (state {state}): nothing to "
                      f"stop{hint}", soft_wrap=True)
    elif exited:
        console.print(f"{kind} stop sent to daemon pid {pid}: it has exited")
    elif wait:
        label = (run.identity() or {}).get("name", "")
        console.print(f"{kind} stop sent to daemon pid {pid}; after {timeout:g} s it still "
                      f"waits for its running trials (`adsearch status {label}`; "
                      f"`adsearch stop {label} --now` kills them)", soft_wrap=True)
    else:
        console.print(f"{kind} stop sent to daemon pid {pid}")


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
    from adsearch.daemon.report import build_status, render_status

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
    from adsearch.daemon.report import NO_RUN_DIR
    from adsearch.store import Store

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
    for col in ("search", "state", "daemon", "task", "controller", "trials", "done", "best"):
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
            top = store.top_trials(search.id, 1, full_only=True, succeeded_only=True)
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
    search_opt: str = typer.Option(None, "--search", "-s", hidden=True, help="Old spelling of NAME."),
    run_dir: str = RUN_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print JSON (shape: docs/cli.md)."),
    store_url: str = READ_STORE,
) -> None:
    """One trial: state, result, the pattern drawn, the curve and the logs."""
    import os

    from adsearch.daemon.launch import open_search
    from adsearch.errors import StoreError

    # --search names the store's search when a store is given (--store or $ADSEARCH_STORE);
    # without one it is the old spelling of NAME (the run directory's search)
    from_store = search_opt is not None and bool(store_url or os.environ.get("ADSEARCH_STORE"))
    name, trial = _name_and_trial(args, None if from_store else search_opt)
    run, store, search = open_search(name, run_dir, store_url,
                                     search_opt if from_store else None)
    try:
        rec = store.get_trial(trial)
        if rec.search_id != search.id:
            raise StoreError(f"trial {trial} belongs to another search than {search.name!r}")
        results = store.results(search.id, [trial])
        placed = _placements(store, search.id, trial)
    finally:
        store.close()
    logs = sorted(str(p) for p in run.trial_dir(trial).glob("attempt-*.log")) if run else []
    local = {Path(p).name for p in logs}
    logs += [f"{p['host']}:{p['log']}" for p in placed if Path(p["log"]).name not in local]
    doc = {"search": search.name, "run_dir": str(run.path) if run else None,
           "trial": rec.to_dict(),
           "result": results[0].to_dict() if results else None, "logs": logs,
           "placements": placed}
    if as_json:
        typer.echo(json.dumps(doc, default=str))
        return
    from adsearch.cli.show_view import render_trial
    from adsearch.patterns import SearchSpace

    console.print(render_trial(doc, SearchSpace.from_name(search.config.get("space") or "")),
                  highlight=False, soft_wrap=True)


def export(
    name: str = NAME_ARG,
    run_dir: str = RUN_DIR,
    best: bool = typer.Option(False, "--best", help="Export the best trial(s) (required)."),
    top_k: int = typer.Option(1, "--top-k", help="Export the K best trials."),
    output: Path = EXPORT_OUT,
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON (shape: docs/cli.md)."),
    store_url: str = READ_STORE,
    search_name: str = READ_SEARCH,
) -> None:
    """Write the best patterns as PatternSet files for `adsearch train` and adsearch.ops."""
    from adsearch.daemon.launch import open_search
    from adsearch.patterns import (
        PatternSet,
        Provenance,
        SearchSpace,
        load_patternset,
        save_patternset,
    )

    if not best:
        raise ConfigError("export: pass --best (with --top-k K for several patterns)")
    if top_k < 1:
        raise ConfigError(f"--top-k: invalid value {top_k}; use an integer >= 1")
    _, store, search = open_search(name, run_dir, store_url, search_name)
    try:
        top = store.top_trials(search.id, top_k, full_only=True, succeeded_only=True)
        n_bad, last_bad = store.bad_patterns(search.id) if not top else (0, None)
    finally:
        store.close()
    if not top and n_bad:
        raise ConfigError(
            f"search {search.name!r} has no successful trial: all {n_bad} finished trial(s) "
            f"failed (last error: {(last_bad or '?').splitlines()[0][:200]}); nothing to export. "
            f"See `adsearch status {search.name}` and the trial logs")
    if not top:
        raise ConfigError(f"search {search.name!r} has no finished trial yet; nothing to export")
    space = SearchSpace.from_name(search.config.get("space") or "")
    base = output or Path(f"{search.name}-best.json")
    paths = []
    for i, (t, r) in enumerate(top, 1):
        patterns = tuple(space.pattern_cls.from_dict(p) for p in t.pattern)  # type: ignore[attr-defined]
        ps = PatternSet(space, patterns, Provenance(search=search.name, trial_id=t.id, reward=r.reward))
        path = base if top_k == 1 else base.with_name(f"{base.stem}-{i}{base.suffix or '.json'}")
        if path.is_dir():
            raise ConfigError(f"-o {path}: is a directory; give a file name such as {path}/best.json")
        try:
            save_patternset(ps, path)
        except OSError as exc:
            raise ConfigError(f"-o {path}: cannot write it ({exc.strerror}); choose a writable "
                              "file path") from None
        load_patternset(path)  # read back: what we wrote is what `adsearch train` reads
        paths.append({"trial_id": t.id, "reward": r.reward, "path": str(path)})
        if not as_json:
            console.print(f"trial {t.id} (reward {r.reward:.4f}) -> {path}")
    if as_json:
        typer.echo(json.dumps({"search": search.name, "space": space.name, "written": paths}))


def plot(
    names: list[str] = PLOT_NAMES,
    output: Path = PLOT_OUT,
    store_url: str = READ_STORE,
    search_names: list[str] = PLOT_SEARCH,
) -> None:
    """Plot reward over the search (best so far and batch mean), several searches at once."""
    from adsearch.daemon.launch import known_searches, open_search
    from adsearch.daemon.plot import plot_searches

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
    for fn, cmd in ((start, "start"), (status, "status"), (stop, "stop"), (resume, "resume"),
                    (list_searches, "list"), (show, "show"), (export, "export"), (plot, "plot")):
        app.command(cmd)(fn)
