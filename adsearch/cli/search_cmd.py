"""``adsearch start|stop|resume``: run searches (the read commands are in
:mod:`adsearch.cli.read_cmd`).

Each command parses its input, calls :mod:`adsearch.daemon` and renders the result. The
daemon, controller and tasks are imported inside ``start``/``resume`` only. Errors become ``error: ...`` on stderr
and exit status 1 at the boundary in :mod:`adsearch.cli.main`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from adsearch.cli.console import make_console
from adsearch.command import adsearch_command
from adsearch.errors import ConfigError, DaemonError

console = make_console(emoji=False)  # "--task mod:X:" must not print an emoji

RUN_DIR = typer.Option(None, "--run-dir", help="Run directory (default: ./runs/NAME, or $ADSEARCH_RUNS/NAME).")
NAME_ARG = typer.Argument(None, help="Search name (default: the only search under ./runs).")


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
    controller: str = typer.Option("transformer", "--controller", help="transformer (REINFORCE), random (the baseline) or tpe (Optuna's TPE; needs optuna)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Finished trials per controller update."),
    lookahead: int = typer.Option(None, "--lookahead", help="Trials queued ahead of the slots (default: one per slot)."),
    max_ahead: int = typer.Option(None, "--max-ahead", help="Most trials drawn but not yet fed to the controller (default: batch size + 2 per slot + lookahead); lower, later trials come from a more up-to-date controller."),
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
    # -- rungs checked against the full budget (issue 19 §3, adsearch.calibrate)
    rungs: str = typer.Option(None, "--rungs", help="auto: the first rung (and the full budget) from --calibration FILE; no rung recommended there: no early stopping."),
    calibration: str = typer.Option(None, "--calibration", help="With --rungs auto: a file written by `adsearch calibrate -o FILE` on this task and task config."),
    rung_check_min: float = typer.Option(0.3, "--rung-check-min", help="Stop pruning at a rung whose Spearman with the full budget (over trials that reached both) falls below this."),
    rung_check_pairs: int = typer.Option(8, "--rung-check-pairs", help="... once this many trials reached both."),
    no_rung_check: bool = typer.Option(False, "--no-rung-check", help="Never stop pruning at a rung, whatever its agreement with the full budget."),
    max_attempts: int = typer.Option(3, "--max-attempts", help="Runs of a trial whose child died before it is failed."),
    failure_reward: float = typer.Option(0.0, "--failure-reward", help="Reward of a bad pattern (child raised or diverged)."),
    seed: int = typer.Option(0, "--seed", help="Controller seed."),
    child_seed: int = typer.Option(None, "--child-seed", help="Train every child with this seed (same init and data order: rewards differ by pattern, not luck). Default: a fresh seed per trial."),
    max_drop: float = typer.Option(0.5, "--max-drop", help="Drop cap: refuse, before it trains (a bad pattern, no child), a pattern that drops more than this share of a site's units, or a whole feature map at every placement (1: only the latter)."),
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
    # the re-check before export (docs/cli.md, "The re-check"; adsearch.daemon.recheck)
    recheck_top: int = typer.Option(3, "--recheck-top", help="Once the budget is spent, train the K best patterns again on more seeds; export picks on the mean."),
    recheck_seeds: int = typer.Option(2, "--recheck-seeds", help="More seeds per re-checked pattern (its first result counts too)."),
    no_recheck: bool = typer.Option(False, "--no-recheck", help="Skip the re-check: export picks on one seed's value."),
    # a seeded search (issue 20 §2, adsearch.daemon.enqueue)
    enqueue: list[str] = typer.Option(None, "--enqueue", help="Run this pattern file's patterns first (repeatable; a file of the search's space, e.g. from `adsearch pattern baseline`)."),  # noqa: B008
    seed_baselines: bool = typer.Option(False, "--seed-baselines", help="Run the tuned-baseline grid of the space's family first (v2 spaces: conv2-K, seq2-K)."),
) -> None:
    """Start a new search (in the background unless --foreground)."""
    from adsearch.daemon.config import SearchConfig
    from adsearch.daemon.launch import create_search, find_run_dir, runs_root
    from adsearch.daemon.rundir import RunDir

    task, overrides = _task_and_config(task, task_config, script, workdir, space, data)
    from adsearch.calibrate.use import auto_rungs, check_calibration

    auto, said = auto_rungs(rungs, calibration, scheduler=scheduler, min_epochs=min_epochs,
                            max_epochs=max_epochs, child_epochs=child_epochs)
    if name is None:  # an empty --name is refused by validate(), not replaced
        # a plug-in module:Class is named by its class (a name may hold no ':')
        name = f"{task.rsplit(':', 1)[-1]}-{controller}-{seed}"
    cfg = SearchConfig(
        name=name, task=task, task_config=overrides, space=space,
        controller=controller, batch_size=batch_size, lookahead=lookahead, max_ahead=max_ahead,
        budget_trials=budget_trials, budget_minutes=budget_minutes, gpus=_gpus(gpus),
        slots_per_gpu=slots_per_gpu, workers=workers, child_epochs=child_epochs,
        child_steps=child_steps, child_seconds=child_seconds, child_timeout=child_timeout, seed=seed,
        child_seed=child_seed, max_drop=max_drop, prune_epoch=prune_at_epoch, prune_quantile=prune_quantile,
        scheduler=scheduler, min_epochs=min_epochs, max_epochs=max_epochs, eta=eta,
        max_attempts=max_attempts, failure_reward=failure_reward, data=data,
        executor=executor, ray_address=ray_address, ray_gpus=ray_gpus,
        max_consecutive_failures=max_consecutive_failures or None,
        max_failure_share=None if max_failure_share == 1 else max_failure_share,
        recheck=not no_recheck, recheck_top=recheck_top, recheck_seeds=recheck_seeds,
        enqueue=list(enqueue) if enqueue else None, seed_baselines=seed_baselines,
        rung_check_min=None if no_rung_check else rung_check_min,
        rung_check_pairs=rung_check_pairs,
    )
    if auto:
        from dataclasses import replace

        cfg = replace(cfg, **auto)
    if said:
        console.print(said, highlight=False, soft_wrap=True, markup=False)
    run = RunDir(run_dir) if run_dir else RunDir(runs_root() / name)
    steps = _Steps()
    create_search(cfg, run, store, progress=steps, checks=(check_calibration,))
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
        cmd = escape(adsearch_command())  # `.venv/bin/adsearch` when adsearch is not on PATH
        console.print(f"daemon pid {pid} running; watch: [bold]{cmd} status {name}{where} "
                      f"--watch[/], stop: {cmd} stop {name}{where}, log: {run.log_file}",
                      soft_wrap=True)
        _path_hint()
        return
    from adsearch.views.live import run_foreground

    daemon = run_foreground(run, console, **daemon_opts)
    if getattr(daemon, "fatal", None):  # the final view above says why; scripts see exit 1
        raise DaemonError(f"search {daemon.name!r} failed: {daemon.fatal}")


def _path_hint() -> None:
    """Say how to type a plain ``adsearch`` when it is not on this shell's PATH (after
    ``make run``, which cannot activate its virtual environment for the caller's shell)."""
    from adsearch.command import activate_hint

    hint = activate_hint()
    if hint is not None:
        console.print(f"(`adsearch` is not on this shell's PATH: run `{escape(hint)}` to type "
                      "it as plain `adsearch`)", soft_wrap=True, highlight=False)


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
        hint = (f"; continue it with `{adsearch_command()} resume {search.name}`"
                if state != "finished" else "")
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


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    for fn, cmd in ((start, "start"), (stop, "stop"), (resume, "resume")):
        app.command(cmd)(fn)
