"""Run a verify: check the request, create or continue ``NAME-verify``, run its two stages
through the search daemon (in this process), and pick each baseline's setting on validation.

Everything the user can get wrong (unknown search, no finished trial, k < 1, fewer than two
seeds, a baseline that does not fit the space, a task without a test split, options that
differ from an earlier verify of the same search) is refused before anything is written.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from adsearch.daemon.config import SearchConfig
from adsearch.daemon.rundir import RunDir
from adsearch.errors import ConfigError, DaemonError, DataError
from adsearch.verify import plan as P

if TYPE_CHECKING:
    from adsearch.daemon.loop import Daemon
    from adsearch.store.contract import StoreContract
    from adsearch.store.records import ResultRecord, TrialRecord

#: Options of an earlier verify that must match for ``adsearch verify`` to continue it.
#: ``given_tuned`` (``--tuned``) is missing from verify runs made before it: read as None.
PLAN_KEYS = ("of", "top_k", "seeds", "tune_seeds", "baselines", "test_data", "epochs", "steps",
             "compare", "given_tuned")


@dataclass(frozen=True)
class VerifyRequest:
    """What ``adsearch verify NAME`` was asked to do (see the CLI for each option)."""

    name: str
    run_dir: str | None = None
    top_k: int = 3
    seeds: int = 3
    tune_seeds: int = 1  # tuning runs per grid setting (seeds TUNE_SEED, TUNE_SEED + 1, ...)
    baselines: tuple[str, ...] | None = None  # None: every baseline valid for the space
    test_data: str | None = None
    epochs: float | None = None
    steps: int | None = None
    workers: int | None = None
    tune_only: bool = False
    verify_name: str | None = None  # None: NAME-verify
    #: other searches (names, or run directories) whose best pattern is retrained alongside,
    #: e.g. a random search run at the same budget; same task and space required
    compare: tuple[str, ...] = ()
    #: ``--tuned SPEC``: baseline settings already tuned on validation elsewhere (the syntax
    #: of ``calibrate --reference``); their kinds skip the grid and test the given setting
    tuned: tuple[str, ...] = ()


@dataclass
class VerifyRun:
    """A verify search ready to run: its run directory, config and plan."""

    run: RunDir
    cfg: SearchConfig
    plan: dict[str, Any]
    source: SearchConfig
    created: bool = False
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # runs that gave no number, in words

    @property
    def name(self) -> str:
        return self.cfg.name


# ---------------------------------------------------------------------------- checks
def distinct_top(store: StoreContract, search_id: int, k: int) -> list[dict[str, Any]]:
    """The ``k`` best distinct patterns of full-length, non-failed trials, best first: the
    ones ``export --best`` writes, so verify checks what export ships (re-checked patterns
    on their mean over seeds, then the others on their single value; adsearch.daemon.recheck).
    ``reward`` is the pattern's own trial's value."""
    from adsearch.daemon.recheck import ranking

    cfg = SearchConfig.from_dict(store.get_search_by_id(search_id).config)
    return [{"trial_id": p.trial_id, "reward": p.reward, "pattern": p.pattern}
            for p in ranking(store, search_id, cfg, k).patterns]


def compared_best(refs: Sequence[str], src: SearchConfig, of: str) -> list[dict[str, Any]]:
    """The best full-length pattern of each search in ``refs`` (a name, found like any other
    command finds it, or a run directory), checked against the verified search ``src``."""
    from adsearch.daemon.launch import find_run_dir, load_search

    out: list[dict[str, Any]] = []
    for ref in refs:
        path = Path(ref)
        run = find_run_dir(None, ref) if path.is_dir() else find_run_dir(ref, None)
        store, search = load_search(run)
        try:
            other = SearchConfig.from_dict(search.config)
            if search.name == of:
                raise ConfigError(f"--compare {ref}: that is the search being verified; its "
                                  "patterns are in already (--top-k)")
            why = [f"task {other.task!r} vs {src.task!r}"] if other.task != src.task else []
            why += space_difference(other, src)
            if other.task_config != src.task_config:
                why.append(f"task config {other.task_config!r} vs {src.task_config!r}")
            if why:
                raise ConfigError(f"--compare {ref}: search {search.name!r} differs from "
                                  f"{of!r} in {'; '.join(why)}; compare searches of the same "
                                  "task, space and child protocol")
            top = distinct_top(store, search.id, 1)
        finally:
            store.close()
        if not top:
            raise ConfigError(f"--compare {ref}: search {search.name!r} has no finished "
                              "full-length trial to compare")
        # the other family of the same sites (v1 <-> v2): its pattern travels with its space
        entry = {"search": search.name, **top[0]}
        out.append(entry if other.space == src.space else {**entry, "space": other.space})
    return out


#: built-in tasks whose child reads the patterns of its own space only (a script's trial spec
#: names one space; the synthetic reward is defined on one space's tokens)
ONE_SPACE_TASKS = ("script", "synthetic")


def space_difference(other: SearchConfig, src: SearchConfig) -> list[str]:
    """Why a ``--compare`` search's space cannot be retrained next to ``src``'s (empty: it
    can). The same space, or the other pattern family of the same sites (the paper's v1 space
    next to v2, say ``conv-3`` and ``conv2-3``), on a built-in or plug-in task: each child
    decodes the compared pattern with its own space (not on :data:`ONE_SPACE_TASKS`)."""
    from adsearch.patterns import SearchSpace

    if other.space == src.space:
        return []
    a, b = SearchSpace.from_name(other.space), SearchSpace.from_name(src.space)
    if not a.same_sites(b):
        return [f"space {other.space!r} vs {src.space!r} (other sites)"]
    if src.task in ONE_SPACE_TASKS:
        return [f"space {other.space!r} vs {src.space!r} (a {src.task} child reads one space)"]
    return []


def test_split_problem(task: str, task_config: dict[str, Any]) -> str | None:
    """Why the task config reports no test metric, or None when it does (or cannot tell)."""
    if task in ("cifar10", "imagenet") and task_config.get("test_data") is None:
        return (f"task {task} of this search has no test split (its test_data is unset): "
                "pass --test-data DIR, e.g. an ImageFolder tree such as cifar10-jpg/test")
    if "test" in task_config and task_config["test"] is False:
        return f"task {task} has its test evaluation off (test: false); pass --test-data FILE"
    if "test_split" in task_config and task_config["test_split"] is None:
        return f"task {task} has no test split (test_split unset); pass --test-data PREFIX"
    return None


def _test_overrides(task: str, test_data: str | None) -> dict[str, Any]:
    if test_data is None:
        return {}
    path = Path(test_data).expanduser()
    if not path.exists() and not any(path.parent.glob(path.name + ".*")):
        raise DataError(f"--test-data: {path} does not exist; give the task's test split")
    from adsearch.tasks import get_task
    from adsearch.tasks.registry import data_overrides

    return data_overrides(get_task(task), task, test_data=str(path.absolute()))


def prepare(req: VerifyRequest) -> VerifyRun:
    """Check ``req`` and return the verify search to run, creating it on the first call."""
    from adsearch.daemon.launch import create_search, find_run_dir, load_search
    from adsearch.patterns import SearchSpace

    P.check_counts(req.top_k, req.seeds)
    if isinstance(req.tune_seeds, bool) or not isinstance(req.tune_seeds, int) or req.tune_seeds < 1:
        raise ConfigError(f"--tune-seeds: invalid value {req.tune_seeds!r}; use an integer >= 1")
    run = find_run_dir(req.name, req.run_dir)
    store, search = load_search(run)
    try:
        src = SearchConfig.from_dict(search.config)
        if src.controller == "fixed":
            raise ConfigError(f"search {search.name!r} is itself a verify run; verify the "
                              f"search it checks ({(src.verify or {}).get('of')})")
        space = SearchSpace.from_name(src.space)
        kinds = P.baseline_kinds(space.kind, req.baselines)
        given = P.given_settings(req.tuned, space.kind, kinds)
        top = distinct_top(store, search.id, req.top_k)
        store_url = run.store_url()
    finally:
        store.close()
    if not top:
        raise ConfigError(f"search {search.name!r} has no finished trial (none done at full "
                          f"length); let it run until `adsearch status {search.name}` shows "
                          "one, then verify")
    vname = req.verify_name or f"{search.name}-verify"
    vrun = RunDir(run.path.parent / vname)
    wanted = {"of": search.name, "top_k": req.top_k, "seeds": list(range(req.seeds)),
              "tune_seeds": [P.TUNE_SEED + i for i in range(req.tune_seeds)],
              "baselines": list(kinds), "test_data": req.test_data, "epochs": req.epochs,
              "steps": req.steps, "compare": list(req.compare) or None, "given_tuned": given}
    compared = compared_best(req.compare, src, search.name)
    if vrun.identity() is not None:
        pid = vrun.daemon_pid()
        if pid is not None:
            raise DaemonError(f"verify run {vname!r} is already running (pid {pid}); wait for "
                              f"it, or watch it with `adsearch status {vname}`")
        return _continue(vrun, wanted, src)
    task_config = {**src.task_config, **_test_overrides(src.task, req.test_data)}
    problem = test_split_problem(src.task, task_config)
    if problem:
        raise ConfigError(f"verify needs a test split: {problem}")
    the_plan = {**wanted, "patterns": top, "compared": compared, "tuned": None,
                "source_space": src.space}
    n_tune = len(tune_items(the_plan))
    # every baseline given (--tuned): no tuning stage; the budget is the test stage's
    n_first = n_tune or (1 + len(top) + len(compared) + len(kinds)) * req.seeds
    vcfg = SearchConfig(
        name=vname, task=src.task, task_config=task_config, space=src.space,
        controller="fixed", batch_size=1, budget_trials=n_first,
        gpus=None if req.workers else src.gpus,  # --workers N: CPU runs, as `start` means it
        slots_per_gpu=src.slots_per_gpu, workers=req.workers or src.workers,
        # the search's full child budget (under ASHA: its top rung); no early stopping here
        child_epochs=req.epochs if req.epochs is not None else src.child_budget().epochs,
        child_steps=req.steps if req.steps is not None else src.child_steps,
        child_seconds=src.child_seconds if req.epochs is None and req.steps is None else None,
        child_timeout=src.child_timeout, seed=src.seed, max_attempts=src.max_attempts,
        lease_seconds=src.lease_seconds, heartbeat_seconds=src.heartbeat_seconds,
        failure_reward=src.failure_reward, data=src.data, executor=src.executor,
        ray_address=src.ray_address, ray_gpus=src.ray_gpus, verify=the_plan,
    )
    create_search(vcfg, vrun, store_url=store_url)
    notes = [] if len(top) == req.top_k else [
        f"search {search.name!r} has {len(top)} distinct finished pattern(s), fewer than "
        f"--top-k {req.top_k}; verifying those"]
    return VerifyRun(vrun, _load_cfg(vrun), the_plan, src, created=True, notes=notes)


def _load_cfg(vrun: RunDir) -> SearchConfig:
    from adsearch.store import Store

    with Store(vrun.store_url()) as store:
        return SearchConfig.from_dict(store.get_search(str(vrun.identity()["name"])).config)  # type: ignore[index]


def _continue(vrun: RunDir, wanted: dict[str, Any], src: SearchConfig) -> VerifyRun:
    cfg = _load_cfg(vrun)
    if cfg.verify is None:
        raise ConfigError(f"{vrun.path} holds search {cfg.name!r}, which is not a verify run; "
                          "pass --verify-name to pick another name")
    diff = [k for k in PLAN_KEYS if cfg.verify.get(k) != wanted[k]]  # missing key: None
    if diff:
        was = ", ".join(f"{k}={cfg.verify.get(k)!r}" for k in diff)
        raise ConfigError(f"verify run {cfg.name!r} exists with other settings ({was}); rerun "
                          "with those to continue it, or pass --verify-name NEW for a new one")
    return VerifyRun(vrun, cfg, dict(cfg.verify), src)


# ---------------------------------------------------------------------------- stages
def tuned_here(the_plan: dict[str, Any]) -> list[str]:
    """The baselines this verify tunes: those compared and not given with ``--tuned``."""
    given = the_plan.get("given_tuned") or {}
    return [k for k in the_plan["baselines"] if k not in given]


def tune_items(the_plan: dict[str, Any]) -> list[tuple[str, P.Regularizer, int]]:
    return [("tune", P.baseline_regularizer(spec), s) for kind in tuned_here(the_plan)
            for spec in P.grid(kind) for s in the_plan["tune_seeds"]]


def test_regularizers(the_plan: dict[str, Any]) -> list[P.Regularizer]:
    regs = [P.none_regularizer(), *P.pattern_regularizers(the_plan["patterns"]),
            *P.compared_regularizers(the_plan.get("compared") or [])]
    tuned = the_plan.get("tuned") or {}
    regs += [P.baseline_regularizer(tuned[k]["spec"]) for k in the_plan["baselines"] if k in tuned]
    return regs


def test_items(the_plan: dict[str, Any]) -> list[tuple[str, P.Regularizer, int]]:
    return [("test", r, s) for r in test_regularizers(the_plan) for s in the_plan["seeds"]]


def ensure_trials(vr: VerifyRun, items: list[tuple[str, P.Regularizer, int]]) -> int:
    """Add the planned trials the store does not hold yet; set the trial budget to the total
    and reopen a finished search. Returns how many were added."""
    from adsearch.store import NewTrial, Store

    with Store(vr.run.store_url()) as store:
        search = store.get_search(vr.name)
        have = {(t.pattern_hash, t.seed) for t in store.trials(search.id)}
        new = []
        for stage, reg, seed in items:
            key = P.trial_key(stage, reg.stored)
            if (key, seed) not in have:
                have.add((key, seed))
                new.append(NewTrial(pattern=reg.stored, pattern_hash=key, tokens=[],
                                    controller_version=0, logp=0.0, seed=seed))
        if new:
            store.add_trials(search.id, new)
        total = sum(store.counts(search.id).values())
        cfg = SearchConfig.from_dict(search.config)
        if total and cfg.budget_trials != total:  # 0: every baseline given, --tune-only
            store.set_search_config(search.id, cfg.with_changes(budget_trials=total).to_dict())
        if new and search.state == "finished":
            store.set_search_state(search.id, "stopped")
        return len(new)


def run_pending(vr: VerifyRun, on_tick: Callable[[Daemon], None] | None = None) -> bool:
    """Run the daemon of the verify search until its queued trials are done. Returns False
    when nothing was pending. Raises DaemonError when it stopped before the end."""
    from adsearch.store import Store

    with Store(vr.run.store_url()) as store:
        counts = store.counts(store.get_search(vr.name).id)
    if not counts.get("queued", 0) and not counts.get("running", 0):
        return False
    from adsearch.daemon.runner import run_daemon

    daemon = run_daemon(str(vr.run.path), on_tick=on_tick)
    if not daemon.finished:
        why = daemon.fatal or daemon.stop_reason or "stopped"
        raise DaemonError(f"verify run {vr.name!r} stopped before its runs finished ({why}); "
                          f"run `adsearch verify {vr.plan['of']}` again to continue it")
    return True


def outcomes(vr: VerifyRun) -> dict[tuple[str, int], tuple[TrialRecord, ResultRecord | None]]:
    """(pattern_hash, seed) -> (trial, result or None) of every trial of the verify search."""
    from adsearch.store import Store

    with Store(vr.run.store_url()) as store:
        sid = store.get_search(vr.name).id
        trials = store.trials(sid)
        results = {r.trial_id: r for r in store.results(sid)}
    return {(t.pattern_hash, t.seed): (t, results.get(t.id)) for t in trials}


class UsableResult(Protocol):
    """A stored result that counts (:func:`usable`): it has a reward."""

    @property
    def reward(self) -> float: ...

    @property
    def metrics(self) -> dict[str, Any]: ...


def usable(result: ResultRecord | None) -> TypeGuard[UsableResult]:
    """A result that counts: finished with a reward, not a crashed ("bad pattern") child."""
    return (result is not None and result.reward is not None
            and not (result.metrics or {}).get("bad_pattern"))


def failure_line(vr: VerifyRun, trial: TrialRecord, label: str) -> str:
    """One line naming a run that gave no number: trial, state, error and its log."""
    log = vr.run.trial_dir(trial.id) / f"attempt-{max(1, trial.attempts)}.log"
    return (f"{label} seed {trial.seed}: trial {trial.id} {trial.state}: "
            f"{(trial.error or 'no result').splitlines()[0][:300]} (log: {log})")


def select_tuned(vr: VerifyRun) -> dict[str, dict[str, Any]]:
    """Each baseline's best grid setting by mean **validation** reward over the tuning seeds
    (ties: the first in grid order), ``"source": "tuned"``; a baseline given with
    ``--tuned`` keeps its given setting, ``"source": "given"`` (``val_mean`` None, ``grid``
    []). Records it in the verify search's plan and event log."""
    from adsearch.store import Store

    got = outcomes(vr)
    tuned: dict[str, dict[str, Any]] = {}
    vr.failures = []
    given = vr.plan.get("given_tuned") or {}
    for kind in vr.plan["baselines"]:
        if kind in given:
            tuned[kind] = {"spec": given[kind], "label": P.describe(given[kind]),
                           "val_mean": None, "grid": [], "source": "given"}
            continue
        rows: list[dict[str, Any]] = []
        for spec in P.grid(kind):
            key = P.trial_key("tune", [spec])
            vals: list[float] = []
            for s in vr.plan["tune_seeds"]:
                t, r = got.get((key, s), (None, None))
                if usable(r):
                    vals.append(float(r.reward))
                elif t is not None:
                    vr.failures.append(failure_line(vr, t, P.describe(spec)))
            rows.append({"spec": spec, "label": P.describe(spec), "val": vals,
                         "val_mean": statistics.fmean(vals) if vals else None})
        scored = [r for r in rows if r["val_mean"] is not None]
        if not scored:
            vr.failures.append(f"{kind}: no tuning run finished, so it is left out of the "
                               "comparison")
            continue
        best = max(scored, key=lambda r: r["val_mean"])
        tuned[kind] = {"spec": best["spec"], "label": best["label"], "val_mean": best["val_mean"],
                       "grid": rows, "source": "tuned"}
    plan = {**vr.plan, "tuned": tuned}
    with Store(vr.run.store_url()) as store:
        search = store.get_search(vr.name)
        cfg = SearchConfig.from_dict(search.config)
        if cfg.verify != plan:
            store.set_search_config(search.id, cfg.with_changes(verify=plan).to_dict())
            store.log_event(search.id, "verify.tuned",
                            "tuned on validation: " + ", ".join(
                                f"{v['label']} ({v['val_mean']:.4g})" if v["source"] == "tuned"
                                else f"{v['label']} (given with --tuned, not tuned here)"
                                for v in tuned.values()),
                            {k: {"spec": v["spec"], "val_mean": v["val_mean"],
                                 "source": v["source"]} for k, v in tuned.items()})
    vr.plan = plan
    return tuned
