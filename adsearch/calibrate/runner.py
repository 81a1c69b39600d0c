"""``adsearch calibrate``'s training runs: K reference regularizers at the full budget,
validated at every whole epoch, in parallel child processes.

Each reference is one child run of the search daemon's kind (``python -m
adsearch.daemon.child SPEC RESULT`` in a :class:`~adsearch.daemon.slots.ChildProcess`, with
the same slots, threads, failure classes and result document), given a budget whose rungs
are every whole epoch below the full budget and no store: the tasks evaluate at each rung
(the value a rung would see) and nothing is pruned.

Crash safety (the house's way): the work directory holds one file per finished reference,
``<key>.json``, written atomically when its child ends; ``key`` hashes the task, its
resolved config, the budget, the regularizer and the seed. Rerunning the same command skips
every reference with such a file (and adopts a finished child's result that a crash left
before its file was written), so an interrupted calibration continues where it stopped.
A child that fails for another reason than its regularizer (a code or setup error, a kill)
writes no file: it is reported with its log and run again next time.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adsearch.atomic import write_json_atomic
from adsearch.calibrate import analysis as A
from adsearch.errors import ConfigError, DaemonError, PatternError

if TYPE_CHECKING:
    from adsearch.daemon.slots import ChildProcess, Slot
    from adsearch.patterns import SearchSpace

Say = Callable[[str], None]
#: child statuses that are outcomes of the regularizer itself (kept, never rerun)
FINISHED = ("ok", "bad_pattern")


@dataclass(frozen=True)
class CalibrateRequest:
    """What ``adsearch calibrate`` was asked to do (see the CLI for each option)."""

    task: str
    task_config: dict[str, Any] = field(default_factory=dict)  # overrides, as `start` takes them
    data: str | None = None  # --data: the task's data path
    space: str = ""  # --space ("" = the task's)
    child_epochs: float | None = None  # the full budget (None: the task config's epochs)
    references: tuple[str, ...] = ()  # --reference SPEC (none, dropout:0.1, a JSON spec)
    patterns: tuple[str, ...] = ()  # --pattern FILE (pattern-set files)
    seed: int = 0  # every reference trains with this seed (same init and data order)
    workers: int | None = None  # CPU mode: references at once
    gpus: list[str] | None = None  # GPU ids (default: CUDA_VISIBLE_DEVICES / torch.cuda)
    threshold: float = A.THRESHOLD  # Spearman a rung needs
    metric: str = "val_metric"  # the curve field ranked (analysis.METRICS)
    work_dir: str | None = None  # None: ./calibrations/TASK-HASH
    child_timeout: float | None = None  # kill a child after this many seconds (None: 6 h)


@dataclass(frozen=True)
class Reference:
    """One reference regularizer: ``stored`` is what a trial stores (``[spec]`` for a
    baseline, one pattern dict per site for a pattern set)."""

    label: str
    stored: list[Any]


@dataclass
class Plan:
    """A checked calibration, ready to run."""

    task: str
    task_config: dict[str, Any]  # resolved: every key of the task's config
    space: str
    full_epochs: float
    references: list[Reference]
    request: CalibrateRequest
    work_dir: Path
    slots: list[Slot] = field(default_factory=list)
    slot_source: str = ""

    def key(self, ref: Reference) -> str:
        """The identity of one reference run (see the module docstring)."""
        blob = json.dumps([self.task, self.task_config, self.full_epochs, ref.stored,
                           self.request.seed, A.VERSION], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def budget(self) -> dict[str, Any]:
        """The child budget: the full budget, with a rung (a validation point) per epoch."""
        return {"epochs": self.full_epochs, "rungs": A.rung_epochs(self.full_epochs)}


# ---------------------------------------------------------------------------- references
def parse_reference(text: str, space_kind: str) -> Reference:
    """``none``, ``KIND:RATE`` (``dropout:0.1``), ``dropblock:RATE:BLOCK`` or a JSON spec
    object such as ``{"kind": "variational", "drop_prob": 0.3}``; checked against the
    baselines that fit a space of ``space_kind`` (``conv`` or ``seq``). The syntax is
    :func:`adsearch.verify.plan.parse_spec`'s (``adsearch verify --tuned`` takes it too)."""
    from adsearch.verify import plan as P

    spec = P.parse_spec(text, space_kind, "--reference")
    return Reference(P.describe(spec), [spec])


def pattern_reference(path: str, space: SearchSpace) -> Reference:
    """A pattern-set file as a reference (its space must fit the task's)."""
    from adsearch.patterns.patternset import load_patternset

    ps = load_patternset(Path(path).expanduser())
    try:
        ps.check_space(space, source=f"--pattern {path}")
    except PatternError as exc:
        raise ConfigError(str(exc)) from None
    return Reference(f"pattern {Path(path).name}", [p.to_dict() for p in ps.patterns])


def default_references(space_kind: str) -> list[Reference]:
    """none and the tuned-baseline grid of every baseline that fits the space (the grid of
    ``adsearch verify``, :mod:`adsearch.verify.plan`)."""
    from adsearch.verify import plan as P

    refs = [Reference("none", [{"kind": "none"}])]
    for kind in P.baseline_kinds(space_kind, None):
        refs += [Reference(P.describe(s), [s]) for s in P.grid(kind)]
    return refs


# ---------------------------------------------------------------------------- plan
def prepare(req: CalibrateRequest) -> Plan:
    """Check everything before any run: the task, its config and data (as ``start`` does),
    that the task reports a curve at rungs, the budget, the references, the options."""
    from adsearch.daemon.config import SearchConfig
    from adsearch.daemon.launch import check_task
    from adsearch.daemon.slots import plan_slots
    from adsearch.patterns import SearchSpace
    from adsearch.tasks import get_task, supports_pruning

    A.check_threshold(req.threshold)
    A.check_metric(req.metric)
    cfg = SearchConfig(name="calibrate", task=req.task, task_config=dict(req.task_config),
                       space=req.space, data=req.data, workers=req.workers, gpus=req.gpus,
                       child_epochs=req.child_epochs, child_timeout=req.child_timeout,
                       seed=req.seed).validate()
    task = get_task(cfg.task)
    if not supports_pruning(cfg.task, task):
        raise ConfigError(f"task {cfg.task} reports no validation value at rungs "
                          "(budget.prune_now), so it cannot be calibrated; tasks that do: "
                          "cifar10, imagenet, wikitext2, ptb, translation, synthetic, and "
                          "plug-ins with supports_pruning = True")
    cfg = check_task(cfg)
    full = cfg.full_epochs()
    if full is None:
        raise ConfigError(f"task {cfg.task}: its full budget is not a number of epochs; give "
                          "--child-epochs E")
    if full <= 1 + A.EPS:
        raise ConfigError(f"the full budget is {full:g} epoch(s): no whole epoch lies before it "
                          "to put a rung at; give --child-epochs E with E > 1")
    space = SearchSpace.from_name(cfg.space)
    refs = [parse_reference(t, space.kind) for t in req.references]
    refs += [pattern_reference(p, space) for p in req.patterns]
    if not refs:
        refs = default_references(space.kind)
    seen: set[str] = set()
    for r in refs:
        blob = json.dumps(r.stored, sort_keys=True)
        if blob in seen:
            raise ConfigError(f"reference {r.label!r} is given twice; give each once")
        seen.add(blob)
    if len(refs) < A.MIN_REFERENCES:
        raise ConfigError(f"{len(refs)} reference(s): a rank correlation needs at least "
                          f"{A.MIN_REFERENCES}; add --reference or --pattern")
    slots, source = plan_slots(gpus=cfg.gpus, slots_per_gpu=1, workers=cfg.workers)
    plan = Plan(cfg.task, dict(cfg.task_config), cfg.space, full, refs, req, Path("."),
                slots, source)
    if req.work_dir:
        plan.work_dir = Path(req.work_dir).expanduser()
    else:
        blob = json.dumps([plan.task, plan.task_config, full, req.seed], sort_keys=True)
        tag = hashlib.sha256(blob.encode()).hexdigest()[:10]
        plan.work_dir = Path("calibrations") / f"{cfg.task.rsplit(':', 1)[-1]}-{tag}"
    if plan.work_dir.exists() and not plan.work_dir.is_dir():
        raise ConfigError(f"--work-dir: {plan.work_dir} is a file; give a directory")
    return plan


# ---------------------------------------------------------------------------- runs
def finished_file(plan: Plan, ref: Reference) -> Path:
    return plan.work_dir / f"{plan.key(ref)}.json"


def load_finished(plan: Plan, ref: Reference) -> dict[str, Any] | None:
    """The stored outcome of ``ref``, or None when it has not finished (or the file is not
    a finished outcome of this very run, which is then run again)."""
    path = finished_file(plan, ref)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("key") != plan.key(ref) or doc.get("status") not in FINISHED:
        return None
    return doc


def _adopt(plan: Plan, ref: Reference, result_path: Path) -> dict[str, Any] | None:
    """Turn a child's result document into the reference's finished file (atomically), or
    return None (with the document kept aside) when it is not a finished outcome."""
    try:
        res = json.loads(result_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if res.get("status") not in FINISHED:
        return {"status": res.get("status"), "error": res.get("error")}
    doc = {"key": plan.key(ref), "label": ref.label, "stored": ref.stored,
           "status": res["status"], "error": res.get("error"), "curve": res.get("curve") or [],
           "metrics": res.get("metrics") or {}, "seconds": res.get("seconds"),
           "seed": plan.request.seed, "budget": plan.budget()}
    write_json_atomic(finished_file(plan, ref), doc, durable=True, indent=1, allow_nan=False)
    return doc


def run(plan: Plan, say: Say = print) -> list[dict[str, Any]]:
    """Train every reference not finished yet; return the outcomes in reference order.

    Raises:
        DaemonError: a run failed for another reason than its regularizer (listed with its
            log; rerun to retry it), or the command was interrupted (rerun to continue).
    """
    from adsearch.daemon.slots import ChildProcess, ended_children

    plan.work_dir.mkdir(parents=True, exist_ok=True)
    done: dict[int, dict[str, Any]] = {}
    todo: list[int] = []
    for i, ref in enumerate(plan.references):
        got = load_finished(plan, ref)
        if got is None:
            result = plan.work_dir / plan.key(ref) / "result.json"
            got = _adopt(plan, ref, result) if result.is_file() else None
            got = got if got is not None and got.get("key") else None
        if got is not None:
            done[i] = got
        else:
            todo.append(i)
    total = len(plan.references)
    say(f"{len(done)}/{total} reference(s) already done in {plan.work_dir}; {len(todo)} to "
        f"train for {plan.full_epochs:g} epochs on {len(plan.slots)} slot(s) ({plan.slot_source})")
    timeout = plan.request.child_timeout or 6 * 3600.0
    children: dict[int, ChildProcess] = {}
    owner: dict[int, int] = {}  # slot index -> reference index
    failures: list[str] = []
    started = time.time()
    try:
        while todo or children:
            for slot in plan.slots:
                if slot.index in children or not todo:
                    continue
                i = todo.pop(0)
                ref = plan.references[i]
                rdir = plan.work_dir / plan.key(ref)
                rdir.mkdir(parents=True, exist_ok=True)
                result = rdir / "result.json"
                result.unlink(missing_ok=True)
                spec = {"trial_id": i + 1, "attempt": 1, "task": plan.task,
                        "task_config": plan.task_config, "space": plan.space,
                        "patterns": ref.stored, "threads": slot.threads,
                        "budget": plan.budget(), "device": slot.device,
                        "seed": plan.request.seed}
                write_json_atomic(rdir / "spec.json", spec, durable=False)
                children[slot.index] = ChildProcess(slot, i + 1, rdir / "spec.json", result,
                                                    rdir / "child.log", timeout)
                owner[slot.index] = i
                say(f"  started {ref.label} on {slot.name}")
            time.sleep(0.2)
            for index, child, code in ended_children(children, time.time()):
                i = owner.pop(index)
                ref = plan.references[i]
                got = _adopt(plan, ref, child.result_path)
                if got is not None and got.get("key"):
                    done[i] = got
                    final = A.final_value(got["curve"], plan.full_epochs, plan.request.metric,
                                          bool(plan.task_config.get("keep_best")),
                                          A.best_epoch_of(got))
                    what = ("diverged: no final value" if got["status"] != "ok" else
                            f"final {plan.request.metric} {final:.4g}" if final is not None
                            else "no final value")
                    say(f"[{len(done)}/{total}] {ref.label} done in {got.get('seconds') or 0:.0f}"
                        f" s ({what}); {time.time() - started:.0f} s so far")
                else:
                    why = (got or {}).get("error") or child.kill_reason or (
                        f"the child exited with status {code} and wrote no result")
                    failures.append(f"{ref.label}: {str(why).splitlines()[0][:300]} "
                                    f"(log: {child.log_path})")
                    say(f"  {ref.label} FAILED: {str(why).splitlines()[0][:200]}")
    except KeyboardInterrupt:
        for child in children.values():
            child.kill("interrupted")
            child.reap()
        raise DaemonError(f"calibrate interrupted: {len(done)} of {total} reference(s) done "
                          f"and kept in {plan.work_dir}; rerun the same command to continue"
                          ) from None
    if failures:
        raise DaemonError(f"{len(failures)} reference run(s) failed (not a result of their "
                          f"regularizer; nothing written but the {len(done)} finished run(s), "
                          "kept for a rerun, which retries these):\n  " + "\n  ".join(failures))
    return [done[i] for i in range(total)]


def calibrate(plan: Plan, say: Say = print) -> dict[str, Any]:
    """Run ``plan`` and build the calibration document (``analysis.build_doc``)."""
    outcomes = run(plan, say)
    doc = A.build_doc(task=plan.task, task_config=plan.task_config, space=plan.space,
                      full_epochs=plan.full_epochs, metric=plan.request.metric,
                      threshold=plan.request.threshold, seed=plan.request.seed,
                      references=outcomes)
    doc["work_dir"] = str(plan.work_dir)
    return doc

