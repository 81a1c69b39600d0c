"""Create, start, resume and stop searches (what the CLI's start/resume/stop call).

Everything a user can get wrong is checked before anything is written: the task and its
config, the data path, the search space, the controller kind, the budgets, the run
directory (a directory that belongs to another search is refused) and the store (a name
that already exists is refused). A failed check leaves the store and the disk unchanged.
"""

from __future__ import annotations

import math
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adsearch.daemon.config import SearchConfig, check_name
from adsearch.daemon.rundir import DB_NAME, RunDir, process_identity
from adsearch.errors import ConfigError, DaemonError, DataError, PatternError, StoreError

if TYPE_CHECKING:
    from adsearch.store.contract import StoreContract
    from adsearch.store.records import SearchRecord


def runs_root() -> Path:
    """Where run directories live by default: ``$ADSEARCH_RUNS`` or ``./runs``.

    Raises:
        ConfigError: The path exists and is not a directory.
    """
    raw = os.environ.get("ADSEARCH_RUNS")
    root = Path(raw or "runs")
    if root.exists() and not root.is_dir():
        where = f"$ADSEARCH_RUNS={raw}" if raw else "./runs"
        raise ConfigError(f"{where} is not a directory ({root.absolute()} is a file); point "
                          "$ADSEARCH_RUNS at a directory for run directories, or move the file")
    return root


def find_run_dir(name: str | None, run_dir: str | None) -> RunDir:
    """The run directory of search ``name`` (or the only search under the runs root).

    This is the one place every command (status, resume, stop, export, show, plot) turns a
    NAME into a directory: a NAME outside the safe alphabet (``../x``, ``q?x``) is refused
    here, so no command follows a path out of the runs root.
    """
    if run_dir:
        return RunDir(run_dir)
    root = runs_root()
    if name is not None:
        check_name(name, "NAME")
        run = RunDir(root / name)
        if run.identity() is None:
            if run.identity_file.is_file():
                run.require_identity()  # raises: search.json is corrupt
            known = ", ".join(known_searches()) or "none"
            raise ConfigError(
                f"no search {name!r} under {root.absolute()} (known: {known}); pass --run-dir "
                "if it lives elsewhere, or start it with `adsearch start --name NAME`"
            )
        return run
    found = known_searches()
    if len(found) == 1:
        return RunDir(root / found[0])
    if not found:
        raise ConfigError(f"no search under {root.absolute()}; start one with `adsearch start`")
    raise ConfigError(f"several searches under {root.absolute()} ({', '.join(found)}); name one")


def known_searches() -> list[str]:
    """Names of the run directories under the runs root that hold a ``search.json``."""
    root = runs_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "search.json").is_file())


def check_task(cfg: SearchConfig) -> SearchConfig:
    """Validate the task side of ``cfg`` (task or plug-in, config, data, space, early
    stopping); return it completed with the full task config and the space name."""
    from adsearch.patterns import SearchSpace
    from adsearch.tasks import get_task, load_config, supports_pruning
    from adsearch.tasks.registry import is_builtin

    task = get_task(cfg.task)
    raw = dict(cfg.task_config)
    if cfg.data is not None:
        path = Path(cfg.data).expanduser()
        if not path.exists():
            raise DataError(
                f"--data: {path} does not exist; give the path of the {cfg.task} data (layouts: "
                "docs/tasks.md) or omit --data to use the task's default"
            )
        if path.is_dir() and not any(path.iterdir()):
            raise DataError(f"--data: {path} is an empty directory; point it at the data set")
        raw["data"] = str(path.absolute())
    if cfg.space:  # in the words of the option the user typed
        try:
            SearchSpace.from_name(cfg.space)
        except PatternError as exc:
            raise ConfigError(f"--space: {exc}") from None
    given = raw.get("space")
    if cfg.space and given is not None and given != cfg.space:
        raise ConfigError(
            f"--task-config space {given!r} contradicts --space {cfg.space}; a search has one "
            "space: give it once, with --space"
        )
    task_config = load_config(task, cfg.task, raw)
    # One source for the space: the daemon draws from cfg.space and each child decodes with
    # it (the spec carries it), so the task must build its models for that same space.
    own = getattr(task_config, "space", None)  # tasks whose config names the space (synthetic)
    if cfg.space and isinstance(own, str) and own != cfg.space:  # not given: checked above
        task_config = load_config(task, cfg.task, {**raw, "space": cfg.space})
    default_space = task.space(task_config)
    space = SearchSpace.from_name(cfg.space) if cfg.space else default_space
    if not space.same_sites(default_space):
        how = ("omit --space" if is_builtin(cfg.task) else
               "set the space through the plug-in's own config (--task-config), or omit --space")
        raise ConfigError(
            f"--space {space.name}: task {cfg.task} has dropout sites for space "
            f"{default_space.name}; {how} or pass --space {default_space.name} "
            f"(or {default_space.name}+off)"
        )
    if cfg.schedule() is not None and not supports_pruning(cfg.task, task):
        opt = "--scheduler asha" if cfg.scheduler else "--prune-at-epoch"
        raise ConfigError(
            f"{opt}: task {cfg.task} does not support early stopping; a plug-in "
            "that calls budget.prune_now(...) in run_child declares `supports_pruning = True` "
            f"on its class (docs/tasks.md), or drop {opt}"
        )
    loader = getattr(task, "load", None)
    if callable(loader):  # the task's own data check: DataError/ConfigError before any write
        loader(task_config)
    if cfg.enqueue or cfg.seed_baselines:  # issue 20: read and check the files now, once
        from adsearch.daemon.enqueue import baseline_grid, read_enqueue_files

        paths = [e for e in cfg.enqueue or [] if isinstance(e, str)]
        entries = [e for e in cfg.enqueue or [] if not isinstance(e, str)]
        cfg = cfg.with_changes(enqueue=entries + read_enqueue_files(paths, space.name) or None)
        if cfg.seed_baselines:
            baseline_grid(space)  # a v1 space is refused here, before anything is written
    return cfg.with_changes(task_config=task_config.to_dict(), space=space.name)


def check_slots(cfg: SearchConfig) -> None:
    """Refuse GPU slots for a real task when torch sees no CUDA device (the daemon checks
    again when it starts, e.g. after a resume on another machine)."""
    from adsearch.daemon.slots import plan_slots

    slots, source = plan_slots(gpus=cfg.gpus, slots_per_gpu=cfg.slots_per_gpu, workers=cfg.workers)
    if cfg.task == "synthetic" or all(s.gpu is None for s in slots):
        return
    import torch

    if not torch.cuda.is_available():
        raise DaemonError(
            f"{source}, but torch sees no CUDA device (torch.cuda.is_available() is False); "
            "run on CPU with --workers N, or fix the GPU setup"
        )


def create_search(cfg: SearchConfig, run: RunDir, store_url: str | None = None,
                  progress: Callable[[str], None] | None = None,
                  checks: Sequence[Callable[[SearchConfig], None]] = ()) -> RunDir:
    """Validate everything, then create the search in the store and claim ``run``.
    ``progress`` is told each step as it starts (``start`` prints them). ``checks`` are the
    caller's own, run on the config as the task resolved it (``start --rungs auto``:
    :func:`adsearch.calibrate.use.check_calibration`); each raises ConfigError to refuse."""
    from adsearch.controller import KINDS
    from adsearch.store import Store

    say = progress or (lambda _msg: None)
    cfg = cfg.validate()
    say(f"checking task {cfg.task}: its config, space and data (loads torch and the task)")
    cfg = check_task(cfg)
    for check in checks:
        check(cfg)
    if cfg.controller not in KINDS:
        raise ConfigError(f"--controller: unknown kind {cfg.controller!r}; use {', '.join(KINDS)}")
    check_slots(cfg)
    run.check_belongs_to(cfg.name)
    if run.identity() is not None:
        raise ConfigError(
            f"search {cfg.name!r} already exists in {run.path}; continue it with "
            f"`adsearch resume {cfg.name}` or pick another --name"
        )
    url = store_url or run.default_store_url
    # The run directory is claimed first, atomically: of two `start`s racing for one name
    # exactly one creates search.json, and the other stops here having written nothing of
    # the winner's (it used to write search.json too, and its rollback deleted the winner's).
    db = run.path / DB_NAME
    fresh = [p for p in (db, db.with_name(DB_NAME + "-wal"), db.with_name(DB_NAME + "-shm"))
             if not p.exists()]
    if not run.claim_new(cfg.name, url):
        raise ConfigError(
            f"search {cfg.name!r} already exists in {run.path} (another `adsearch start` "
            f"created it a moment ago); watch it with `adsearch status {cfg.name}`, or pick "
            "another --name"
        )
    try:
        say("writing the search to the store")
        with Store(url) as store:
            names = [s.name for s in store.list_searches()]
            if cfg.name in names:
                raise ConfigError(
                    f"the store {url} already holds a search named {cfg.name!r}; pick another "
                    "--name, or resume it with its --run-dir"
                )
            store.create_search(cfg.name, cfg.to_dict())
    except BaseException:  # the claim is ours: undo a store file we created, then the claim
        for p in fresh:
            p.unlink(missing_ok=True)
        run.identity_file.unlink(missing_ok=True)
        raise
    return run


def _log_tail(path: Path, start: int, lines: int = 12) -> str:
    """The last ``lines`` lines written to ``path`` after byte offset ``start``."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    tail = [ln for ln in text.splitlines() if ln.strip()][-lines:]
    return "\n".join("  " + ln for ln in tail)


def _death(proc: subprocess.Popen[bytes], run: RunDir, log_start: int) -> str:
    """Why a daemon that never reported ready is gone: how it ended, and its log's tail."""
    code = proc.returncode
    how = (f"was killed by signal {-code} ({signal.Signals(-code).name})" if code is not None
           and code < 0 else f"exited with status {code}")
    tail = _log_tail(run.log_file, log_start)
    return (f"the daemon (pid {proc.pid}) {how} during start-up, before it was ready; "
            f"its log {run.log_file} ends:\n{tail}" if tail else
            f"the daemon (pid {proc.pid}) {how} during start-up, before it was ready, and wrote "
            f"nothing to its log {run.log_file}")


def check_writable(run: RunDir) -> None:
    """Refuse, before anything starts, a run directory a daemon cannot write (read-only
    media, an archive mount): the daemon writes its log, lock, queue, checkpoints and trial
    files there. Reading such a directory (status, export) needs no writes and works.

    Raises:
        DaemonError: The directory cannot be written; the message says where to resume.
    """
    name = (run.identity() or {}).get("name", "NAME")
    try:
        run.path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=run.path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DaemonError(
            f"the run directory {run.path} cannot be written ({exc.strerror or exc}): a "
            "daemon writes its log, queue and checkpoints there; copy the directory to "
            f"writable storage and resume from the copy (`adsearch resume {name} --run-dir "
            "COPY`), or make it writable (status and export read it as it is)"
        ) from None


def spawn_detached(run: RunDir, timeout: float = 300.0, *, budget_minutes: float | None = None,
                   budget_trials: int | None = None, fresh_controller: bool = False) -> int:
    """Start ``python -m adsearch.daemon RUN_DIR`` in its own session, wait until it is
    ready, and return its pid. A failed start raises with the daemon's own message; a
    daemon that dies before it is ready (killed, crashed) raises saying so, with the tail of
    what it wrote to its log. ``budget_*``: a new total budget the daemon writes once its
    start-up checks passed; ``fresh_controller``: see :class:`~adsearch.daemon.loop.Daemon`."""
    check_writable(run)
    r, w = os.pipe()
    with open(run.log_file, "ab") as log:
        log_start = log.tell()
        proc = subprocess.Popen(
            [sys.executable, "-m", "adsearch.daemon", str(run.path), "--ready-fd", str(w),
             *budget_args(budget_minutes, budget_trials),
             *(["--fresh-controller"] if fresh_controller else [])],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, pass_fds=(w,), close_fds=True,
        )
    os.close(w)
    buf = b""
    eof = False
    deadline = time.time() + timeout
    try:
        while b"\n" not in buf and time.time() < deadline:
            ready, _, _ = select.select([r], [], [], 0.5)
            if ready:
                chunk = os.read(r, 4096)
                if not chunk:
                    eof = True  # the daemon closed its end: it exited (or is exiting)
                    break
                buf += chunk
    finally:
        os.close(r)
    line = buf.decode(errors="replace").strip()
    if line.startswith("ok"):
        proc.returncode = 0  # detached: never waited for here (silences Popen.__del__)
        return proc.pid
    if line.startswith("error "):
        proc.wait(timeout=30)
        raise DaemonError(line[len("error "):])
    if eof:  # the pipe closes a moment before the process can be reaped: wait for it
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        if eof:
            raise DaemonError(f"the daemon (pid {proc.pid}) closed its start-up pipe without "
                              f"reporting ready and still runs; see {run.log_file}")
        raise DaemonError(f"the daemon (pid {proc.pid}) did not report ready within "
                          f"{timeout:.0f} s; see {run.log_file}")
    raise DaemonError(_death(proc, run, log_start))


def budget_args(minutes: float | None, trials: int | None) -> list[str]:
    """The daemon's command-line options for a new budget (``repr`` keeps a float exact)."""
    return ([] if minutes is None else ["--budget-minutes", repr(float(minutes))]) + (
        [] if trials is None else ["--budget-trials", str(int(trials))])


def stop_daemon(run: RunDir, *, cold: bool, wait: bool, timeout: float = 600.0) -> tuple[int | None, bool]:
    """Ask the search's daemon to stop (SIGTERM: warm; SIGUSR1: cold).

    Returns ``(pid, exited)``: ``exited`` is False when ``wait`` is off or the daemon still
    runs after ``timeout`` seconds (a warm stop waits for running children). With no live
    daemon there is nothing to stop: ``(None, True)`` (stopping is idempotent, so a script
    may stop a search that already finished)."""
    pid = run.daemon_pid()
    if pid is None:
        return None, True
    ident = process_identity(pid)  # signal and wait on this process, not on whoever gets its pid
    os.kill(pid, signal.SIGUSR1 if cold else signal.SIGTERM)
    if not wait:
        return pid, False
    deadline = time.time() + timeout
    while process_identity(pid) == ident and time.time() < deadline:
        time.sleep(0.1)
    return pid, process_identity(pid) != ident


def load_search(run: RunDir) -> tuple[Any, Any]:
    """Open the store of ``run`` read-only and return ``(store, search record)``."""
    from adsearch.store import Store

    ident = run.require_identity()
    store = Store(run.store_url(), readonly=True)
    try:
        return store, store.get_search(str(ident["name"]))
    except StoreError:
        store.close()
        raise


def open_search(name: str | None, run_dir: str | None, store_url: str | None = None,
                search: str | None = None) -> tuple[RunDir | None, Any, Any]:
    """The one place a read command (status, show, export, plot) finds its search: by NAME or
    ``--run-dir`` through the run directory, or by ``--search NAME`` straight from a store
    (``--store URL``, else ``$ADSEARCH_STORE``), e.g. a ``db copy --remap-ids`` copy that has
    no run directory. Returns ``(run or None, read-only store, search record)``; the caller
    closes the store. Without a run directory there is no daemon state and no local logs.

    Raises:
        ConfigError: ``--search`` with NAME or ``--run-dir``, ``--store`` without
            ``--search``, or ``--search`` with no store URL.
        StoreError: No store at the URL, or no such search in it (the known ones listed).
    """
    from adsearch.store import Store

    if search is None:
        if store_url is not None:
            raise ConfigError("--store reads a search straight from a store: name it with "
                              "--search NAME (or drop --store to use the run directory)")
        run = find_run_dir(name, run_dir)
        store, record = load_search(run)
        return run, store, record
    if name is not None:
        raise ConfigError(f"give the search once: NAME {name!r} (through its run directory) or "
                          f"--search {search!r} (from the store), not both")
    if run_dir is not None:
        raise ConfigError("--run-dir and --search exclude each other: --run-dir reads the store "
                          "its search.json names; --store URL --search NAME reads a store with "
                          "no run directory")
    url = store_url or os.environ.get("ADSEARCH_STORE") or None
    if url is None:
        raise ConfigError(f"--search {search!r}: give the store it lives in with --store URL "
                          "(or set $ADSEARCH_STORE), or pass the search's NAME to read it "
                          "through its run directory")
    store = Store(url, readonly=True)
    try:
        return None, store, store.get_search(search)
    except StoreError:
        store.close()
        raise


@dataclass(frozen=True)
class BudgetChange:
    """A checked new budget (``resume --budget-*``), not yet written."""

    minutes: float | None  # the new total in minutes of daemon run time (None: unchanged)
    trials: int | None  # the new total in trials (None: unchanged)
    config: SearchConfig  # the search's config with the new budget
    message: str  # "budget set: 4 -> 10 trials"


def plan_budget(run: RunDir, store: StoreContract, search: SearchRecord, *, minutes: float | None,
                trials: int | None) -> BudgetChange:
    """Check a new total budget against what ``search`` has used; write nothing.

    The new figures are totals over the whole search, so each must exceed what it has
    already used (it may be lower than the old budget).

    Raises:
        ConfigError: A budget that is not larger than what is used.
    """
    cfg = SearchConfig.from_dict(search.config)
    changes: dict[str, Any] = {}
    said = []
    if minutes is not None:
        used = run.elapsed() / 60
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not (
                math.isfinite(minutes) and minutes > 0):
            raise ConfigError(f"--budget-minutes: {minutes!r} is no budget; give the new total "
                              f"in minutes of daemon run time, more than the {used:.1f} used, "
                              f"e.g. {used + 30:.0f}")
        if not minutes > used:
            raise ConfigError(f"--budget-minutes: the search has already run {used:.1f} "
                              f"minutes; give a larger total, e.g. {used + 30:.0f}")
        changes["budget_minutes"] = minutes
        said.append(f"{_fmt(cfg.budget_minutes)} -> {minutes:g} minutes")
    if trials is not None:
        from adsearch.daemon.recheck import SEARCH_PURPOSES

        n = sum(store.counts(search.id, purposes=SEARCH_PURPOSES).values())  # not re-checks
        if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
            raise ConfigError(f"--budget-trials: {trials!r} is no number of trials; give the "
                              f"new total, a whole number more than the {n} trials the search "
                              f"has, e.g. {n + 50}")
        if not trials > n:
            raise ConfigError(f"--budget-trials: the search already has {n} trials; give a "
                              f"larger total, e.g. {n + 50}")
        changes["budget_trials"] = trials
        said.append(f"{_fmt(cfg.budget_trials)} -> {trials} trials")
    return BudgetChange(minutes, trials, cfg.with_changes(**changes),
                        f"budget set: {', '.join(said)}")


def apply_budget(store: StoreContract, search: SearchRecord, change: BudgetChange) -> None:
    """Write a checked budget: the config, ``finished`` -> ``stopped``, one event."""
    store.set_search_config(search.id, change.config.to_dict())
    if search.state == "finished":
        store.set_search_state(search.id, "stopped")
    data = {k: v for k, v in (("budget_minutes", change.minutes),
                              ("budget_trials", change.trials)) if v is not None}
    store.log_event(search.id, "search.budget", change.message, data)


def set_budget(run: RunDir, *, minutes: float | None, trials: int | None,
               check_only: bool = False) -> str:
    """Set a new budget for a stopped, crashed or finished search (``resume --budget-*``).

    A finished search becomes ``stopped`` so the daemon can pick it up again. With
    ``check_only``, only check (``resume`` hands the budget to the daemon, which writes it
    once it has passed its own start-up checks, so a refused resume writes nothing).
    Returns a one-line description of the change. Raises ConfigError (nothing written) on a
    live daemon or a budget that is not larger (:func:`plan_budget`).
    """
    from adsearch.store import Store

    name = str(run.require_identity()["name"])
    if run.daemon_pid() is not None:
        raise ConfigError(f"search {name!r} has a running daemon; stop it first "
                          f"(`adsearch stop {name}`), then resume with the new budget")
    store = Store(run.store_url(), readonly=check_only)
    try:
        search = store.get_search(name)
        change = plan_budget(run, store, search, minutes=minutes, trials=trials)
        if not check_only:
            apply_budget(store, search, change)
        return change.message
    finally:
        store.close()


def _fmt(value: float | None) -> str:
    return "no limit" if value is None else f"{value:g}"
