"""The configuration of one search, stored as JSON in the store's search record.

Every field has a comment; :meth:`SearchConfig.validate` turns each bad value into a
:class:`~adsearch.errors.ConfigError` that names the option and how to fix it, before anything
is written. No torch here: ``status`` reads this.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from adsearch.errors import ConfigError
from adsearch.strict import strict_from_dict
from adsearch.tasks.result import Budget

if TYPE_CHECKING:
    from adsearch.daemon.pruning import Schedule

NAME_RULE = "1 to 100 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"
"""The safe alphabet of search names (**ours**): a name is a directory under ./runs and part
of the default store URL, so it may hold no path separator, no ``..``, no URL character."""
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

CONTROLLERS = ("transformer", "random", "fixed", "tpe")  # fixed: `adsearch verify`; tpe: optuna
EXECUTORS = ("local", "ray")  # see adsearch.daemon.executors


@dataclass(frozen=True)
class SearchConfig:
    """What one search runs. Defaults are **ours** (the paper gives no scheduling details)."""

    name: str  # the search's unique name in its store
    task: str  # task: registry name (cifar10, synthetic...), plug-in module:Class or entry point
    task_config: dict[str, Any] = field(default_factory=dict)  # the task config's to_dict()
    space: str = ""  # SearchSpace name, e.g. "conv-3"; "" = the task's default
    controller: str = "transformer"  # "transformer" (REINFORCE) or "random" (the baseline)
    controller_config: dict[str, Any] | None = None  # controller config overrides (None: defaults)
    batch_size: int = 8  # finished trials per controller update
    lookahead: int | None = None  # queued trials kept ahead of the slots (None: one per slot)
    max_ahead: int | None = None  # drawn, not yet consumed trials (None: batch + 2 slots + lookahead)
    budget_trials: int | None = None  # stop after this many trials (None: no limit)
    budget_minutes: float | None = None  # stop after this many minutes of daemon run time
    gpus: list[str] | None = None  # GPU ids to use; None: CUDA_VISIBLE_DEVICES / torch.cuda
    slots_per_gpu: int = 1  # children run at once on each GPU
    workers: int | None = None  # CPU mode: children run at once (threads split between them)
    child_epochs: float | None = None  # child budget in epochs (None: the task's default)
    child_steps: int | None = None  # child budget in optimizer steps
    child_seconds: float | None = None  # child budget in seconds of training
    child_timeout: float | None = None  # kill a child after this many seconds (None: derived)
    seed: int = 0  # controller seed; trial seeds derive from it
    child_seed: int | None = None  # every child trains with this seed (common random numbers:
    # init, data order and augmentation are shared, so rewards differ by the pattern, not by
    # luck); None: a fresh seed per trial, derived from ``seed``
    max_drop: float = 0.5  # the drop cap (adsearch.ops.cap): a pattern that drops more than this
    # share of a site's units (or a whole map at every placement) is refused before it trains
    enqueue: list[Any] | None = None  # `start --enqueue FILE`: patterns run first (issue 20;
    # adsearch.daemon.enqueue): the CLI gives paths, launch stores {file, space, patterns} each
    seed_baselines: bool = False  # `start --seed-baselines`: the tuned-baseline grid runs first
    prune_epoch: float | None = None  # early stopping: check children at this epoch (None: off)
    prune_quantile: float = 0.25  # ... and stop those below this quantile of earlier children
    prune_min_trials: int = 8  # ... once this many children have a value there
    scheduler: str | None = None  # "asha": successive halving over rungs (None: off)
    min_epochs: float | None = None  # asha: the first rung, in epochs
    max_epochs: float | None = None  # asha: the full budget (the top rung), in epochs
    eta: float = 3.0  # asha: rungs grow by eta; the top 1/eta at a rung go on
    # rungs checked against the full budget (issue 19 §3, adsearch.daemon.agreement, **ours**)
    calibration: dict[str, Any] | None = None  # `--rungs auto --calibration FILE`: what that
    # calibration measured and recommended (adsearch.calibrate.use); None: rungs set by hand
    rung_check_min: float | None = 0.3  # stop pruning at a rung whose Spearman with the full
    # budget, over the trials that reached both, falls below this (None: never)
    rung_check_pairs: int = 8  # ... once at least this many trials reached both
    rungs_off: list[float] = field(default_factory=list)  # rungs where pruning was stopped
    # (the daemon appends them; every child there is promoted)
    max_attempts: int = 3  # runs of a trial whose child process died before it is failed
    lease_seconds: float = 60.0  # a queue lease without heartbeat this long has expired
    heartbeat_seconds: float = 5.0  # how often a worker renews its lease
    failure_reward: float = 0.0  # reward of a bad pattern (child raised / non-finite reward)
    # the failure circuit breaker (adsearch.daemon.failures.FailureBreaker, **ours**): stop
    # the search as failed when children keep failing, since that is a bug, not bad patterns
    max_consecutive_failures: int | None = 10  # this many ended trials in a row failed (None: off)
    max_failure_share: float | None = 0.8  # more than this share of the last window failed (None: off)
    failure_window: int = 20  # ended trials the share is taken over
    data: str | None = None  # data path given with --data (None: the task's default data)
    executor: str = "local"  # where children run: "local" (subprocesses) or "ray" (Ray tasks)
    ray_address: str | None = None  # executor ray: cluster address (None: a local Ray; "auto")
    ray_gpus: float = 0.0  # executor ray: GPUs each child asks Ray for (fractions allowed)
    verify: dict[str, Any] | None = None  # `adsearch verify`: the plan this fixed search runs
    # (the search it checks, k, seeds, regularizers; see adsearch.verify.plan); None: a search
    # the re-check before export (adsearch.daemon.recheck, issue 19 §5, **ours**): once the
    # search budget is spent, the top ``recheck_top`` full-budget patterns are trained again on
    # ``recheck_seeds`` more seeds each (full budget, no early stopping); export picks on the
    # mean over each pattern's seeds. Re-check children feed no controller and cost no budget.
    recheck: bool = True  # False: `start --no-recheck` (export then picks on one seed's value)
    recheck_top: int = 3  # patterns re-checked (distinct patterns, best single value first)
    recheck_seeds: int = 2  # more seeds per re-checked pattern (its first result is kept too)

    # ------------------------------------------------------------------ derived values
    def child_budget(self) -> Budget:
        epochs = self.child_epochs
        if self.scheduler == "asha" and epochs is None:
            epochs = self.max_epochs  # asha: a promoted child trains up to the top rung
        return Budget(epochs=epochs, steps=self.child_steps, seconds=self.child_seconds)

    def full_epochs(self) -> float | None:
        """A child's full budget in epochs, where known (None: steps or seconds decide)."""
        epochs = self.child_budget().epochs
        if epochs is None:
            epochs = self.task_config.get("epochs")
        return float(epochs) if isinstance(epochs, (int, float)) else None

    def schedule(self) -> Schedule | None:
        """The rung schedule of early stopping (see adsearch.daemon.pruning); None: off.
        ``--prune-at-epoch E`` is one decision rung at E keeping the top ``1 - q``."""
        from adsearch.daemon.pruning import Schedule
        from adsearch.rungs import rungs_for

        if self.scheduler == "asha":
            assert self.min_epochs is not None and self.max_epochs is not None
            return Schedule(rungs_for(self.min_epochs, self.max_epochs, self.eta),
                            float(self.max_epochs), 1.0 / self.eta, math.ceil(self.eta))
        if self.prune_epoch is not None:
            return Schedule((float(self.prune_epoch),), self.full_epochs(),
                            1.0 - self.prune_quantile, self.prune_min_trials)
        return None

    def rechecks(self) -> bool:
        """Whether this search ends with a re-check stage: on unless ``--no-recheck``, and
        never for a verify search (``controller == "fixed"``: it plans its own seeds)."""
        return self.recheck and self.controller != "fixed"

    def timeout_seconds(self) -> float:
        """Seconds after which a running child is killed and its trial retried.

        Default (**ours**): ``4 * child_seconds + 120`` when a time budget is given, else 6 h.
        """
        if self.child_timeout is not None:
            return self.child_timeout
        if self.child_seconds is not None:
            return 4 * self.child_seconds + 120.0
        return 6 * 3600.0

    def effective_lookahead(self, num_slots: int) -> int:
        return num_slots if self.lookahead is None else self.lookahead

    def effective_max_ahead(self, num_slots: int) -> int:
        if self.max_ahead is not None:
            return self.max_ahead
        # running + prepared (one each per slot) + queued lookahead + a batch being filled
        return self.batch_size + 2 * num_slots + self.effective_lookahead(num_slots)

    # ------------------------------------------------------------------ checks and JSON
    def validate(self) -> SearchConfig:
        """Raise ConfigError naming the first bad option; return self when all are fine."""
        check_name(self.name)
        if self.controller not in CONTROLLERS:
            raise ConfigError(
                f"--controller: unknown controller {self.controller!r}; choose one of "
                f"{', '.join(CONTROLLERS)}"
            )
        if (self.controller == "fixed") != (self.verify is not None):
            raise ConfigError("--controller fixed: only `adsearch verify` creates fixed searches "
                              "(their trials are a planned list); use transformer or random")
        _positive_int("--batch-size", self.batch_size)
        _positive_int("--slots-per-gpu", self.slots_per_gpu)
        _positive_int("--max-attempts", self.max_attempts)
        if self.lookahead is not None and (not isinstance(self.lookahead, int) or self.lookahead < 0):
            raise ConfigError(f"--lookahead: invalid value {self.lookahead!r}; use an integer >= 0")
        if self.max_ahead is not None:
            _positive_int("--max-ahead", self.max_ahead)
        if self.budget_trials is not None:
            _positive_int("--budget-trials", self.budget_trials)
        if self.workers is not None:
            _positive_int("--workers", self.workers)
        for opt, value in (("--budget-minutes", self.budget_minutes),
                           ("--child-epochs", self.child_epochs),
                           ("--child-seconds", self.child_seconds),
                           ("--child-timeout", self.child_timeout),
                           ("lease_seconds", self.lease_seconds),
                           ("heartbeat_seconds", self.heartbeat_seconds)):
            if value is not None and (not isinstance(value, (int, float)) or not value > 0
                                      or not math.isfinite(value)):
                raise ConfigError(f"{opt}: invalid value {value!r}; use a positive number")
        if self.child_steps is not None:
            _positive_int("--child-steps", self.child_steps)
        if self.child_seed is not None and (isinstance(self.child_seed, bool)
                                            or not isinstance(self.child_seed, int)
                                            or not 0 <= self.child_seed < 2**31):
            raise ConfigError(f"--child-seed: invalid value {self.child_seed!r}; use an integer "
                              "in [0, 2**31)")
        md = self.max_drop
        if isinstance(md, bool) or not isinstance(md, (int, float)) or not 0 < md <= 1:
            raise ConfigError(f"--max-drop: invalid value {md!r}; use a share in (0, 1] (0.5: "
                              "refuse patterns that drop more than half of a site's units; 1: "
                              "refuse only those that drop a whole map)")
        if self.heartbeat_seconds * 2 > self.lease_seconds:
            raise ConfigError(
                f"heartbeat_seconds ({self.heartbeat_seconds}) must be at most half of "
                f"lease_seconds ({self.lease_seconds}), or live leases would expire"
            )
        self._validate_pruning()
        self._validate_executor()
        if not math.isfinite(self.failure_reward):
            raise ConfigError("--failure-reward: must be a finite number")
        self._validate_breaker()
        _positive_int("--recheck-top", self.recheck_top)
        _positive_int("--recheck-seeds", self.recheck_seeds)
        if not isinstance(self.recheck, bool):
            raise ConfigError(f"recheck: invalid value {self.recheck!r}; use true or false")
        if self.gpus is not None:
            if not self.gpus or any(not str(g).strip().isdigit() for g in self.gpus):
                raise ConfigError(
                    f"--gpus: invalid value {','.join(map(str, self.gpus))!r}; give GPU ids "
                    "such as 0,2"
                )
            if self.workers is not None:
                raise ConfigError("--gpus and --workers exclude each other: pick GPU or CPU mode")
        return self

    def _validate_pruning(self) -> None:
        from adsearch.tasks.registry import PRUNABLE

        self._validate_asha()
        self._validate_rung_check()

        if not (isinstance(self.prune_quantile, (int, float)) and 0 < self.prune_quantile < 1):
            raise ConfigError(f"--prune-quantile: invalid value {self.prune_quantile!r}; use a "
                              "number between 0 and 1 (0.25: stop the worst quarter)")
        _positive_int("prune_min_trials", self.prune_min_trials)
        e = self.prune_epoch
        if e is None:
            return
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not (e >= 1 and e == int(e)):
            raise ConfigError(f"--prune-at-epoch: invalid value {e!r}; use a whole number of "
                              "epochs >= 1 (children are evaluated at the end of each epoch)")
        if self.scheduler is not None:
            raise ConfigError("--prune-at-epoch and --scheduler exclude each other: "
                              "--prune-at-epoch E is ASHA with one rung; pick one")
        _check_reports_curve("--prune-at-epoch", self.task, PRUNABLE)
        epochs = self.child_epochs if self.child_epochs is not None else self.task_config.get("epochs")
        if isinstance(epochs, (int, float)) and e >= epochs:
            raise ConfigError(f"--prune-at-epoch: {e:g} is not before the end of training "
                              f"({epochs:g} epochs), so no child would be stopped; pick a smaller "
                              "epoch or train longer")

    def _validate_rung_check(self) -> None:
        m = self.rung_check_min
        if m is not None and (isinstance(m, bool) or not isinstance(m, (int, float))
                              or not -1 < m <= 1):
            raise ConfigError(f"--rung-check-min: invalid value {m!r}; give a Spearman "
                              "correlation in (-1, 1], e.g. 0.3 (or --no-rung-check)")
        if isinstance(self.rung_check_pairs, bool) or not isinstance(self.rung_check_pairs, int) \
                or self.rung_check_pairs < 3:
            raise ConfigError(f"--rung-check-pairs: invalid value {self.rung_check_pairs!r}; "
                              "use an integer >= 3 (a rank correlation of fewer says nothing)")
        if not isinstance(self.rungs_off, list) or any(
                isinstance(r, bool) or not isinstance(r, (int, float)) for r in self.rungs_off):
            raise ConfigError(f"rungs_off: invalid value {self.rungs_off!r}; a list of epochs")
        cal = self.calibration
        if cal is None:
            return
        first = cal.get("first_rung") if isinstance(cal, dict) else "?"
        if first is None:
            if self.scheduler is not None or self.prune_epoch is not None:
                raise ConfigError("the calibration recommends no early stopping, but the search "
                                  "has a scheduler; drop --scheduler or --rungs auto")
        elif self.scheduler != "asha" or self.min_epochs != first:
            raise ConfigError(f"--rungs auto: the calibration's first rung is {first!r}, but "
                              f"the search has --min-epochs {self.min_epochs!r}; give one of them")

    def _validate_breaker(self) -> None:
        if self.max_consecutive_failures is not None:
            _positive_int("--max-consecutive-failures", self.max_consecutive_failures)
        _positive_int("failure_window", self.failure_window)
        f = self.max_failure_share
        if f is not None and (isinstance(f, bool) or not isinstance(f, (int, float))
                              or not 0 < f < 1):
            raise ConfigError(f"--max-failure-share: invalid value {f!r}; use a number between "
                              "0 and 1 (0.8: stop when more than 80% of the last "
                              f"{self.failure_window} trials failed), or 1 to turn it off")

    def _validate_asha(self) -> None:
        from adsearch.tasks.registry import PRUNABLE

        if self.scheduler is None:
            if self.min_epochs is not None or self.max_epochs is not None:
                raise ConfigError("--min-epochs and --max-epochs need --scheduler asha")
            return
        if self.scheduler != "asha":
            raise ConfigError(f"--scheduler: unknown scheduler {self.scheduler!r}; choose asha")
        eta = self.eta
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not (1 < eta < math.inf):
            raise ConfigError(f"--eta {eta!r}: must be a number greater than 1 (3: the top "
                              "third at each rung go on; 1 would never stop a child)")
        for opt, v in (("--min-epochs", self.min_epochs), ("--max-epochs", self.max_epochs)):
            if v is None:
                raise ConfigError(f"--scheduler asha needs {opt} (e.g. --min-epochs 1 "
                                  "--max-epochs 9 --eta 3: rungs 1, 3 and 9 epochs)")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
                raise ConfigError(f"{opt}: invalid value {v!r}; use a positive number of epochs")
        lo, hi = float(self.min_epochs), float(self.max_epochs)  # type: ignore[arg-type]
        if lo >= hi:
            raise ConfigError(f"--min-epochs {lo:g} is not below --max-epochs {hi:g}: the rungs "
                              "exceed the budget and no child would ever be stopped; lower "
                              "--min-epochs or raise --max-epochs")
        if self.child_epochs is not None and hi > self.child_epochs:
            raise ConfigError(f"--max-epochs {hi:g} exceeds the child budget --child-epochs "
                              f"{self.child_epochs:g}: the top rungs would never be reached; "
                              "drop --child-epochs (asha trains promoted children to "
                              "--max-epochs) or lower --max-epochs")
        _check_reports_curve("--scheduler asha", self.task, PRUNABLE)

    def _validate_executor(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"--executor: unknown executor {self.executor!r}; choose one of "
                              f"{', '.join(EXECUTORS)}")
        g = self.ray_gpus
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not (0 <= g < math.inf):
            raise ConfigError(f"--ray-gpus: invalid value {g!r}; use a number >= 0 (0.5: two "
                              "children per GPU)")
        if self.executor != "ray":
            if self.ray_address is not None or g:
                raise ConfigError("--ray-address and --ray-gpus need --executor ray")
            return
        if self.gpus is not None:
            raise ConfigError("--gpus names this host's GPUs; with --executor ray give --workers N "
                              "(children at once) and --ray-gpus F (GPUs per child, Ray picks them)")
        if self.workers is None:
            raise ConfigError("--executor ray needs --workers N: how many children run at once")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        return strict_from_dict(cls, data, "search config", types_too=False,
                                hint=" (was it written by a newer adsearch?)")

    def with_changes(self, **changes: Any) -> SearchConfig:
        return replace(self, **changes).validate()


def check_name(name: Any, opt: str = "--name") -> str:
    """Return ``name`` if it is a valid search name (:data:`NAME_RULE`); else ConfigError."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        shown = repr(name) if not isinstance(name, str) or len(name) <= 40 else (
            f"{name[:40]!r}... ({len(name)} characters)")
        raise ConfigError(f"{opt}: invalid search name {shown}; a name has {NAME_RULE}")
    return name


def _check_reports_curve(opt: str, task: str, prunable: frozenset[str]) -> None:
    """Refuse early stopping for a built-in task that reports no curve (plug-in tasks say so
    with ``supports_pruning``; launch checks those, since this module imports no task)."""
    from adsearch.tasks.registry import is_builtin

    if is_builtin(task) and task not in prunable:
        raise ConfigError(f"{opt}: task {task!r} reports no learning curve, so it cannot be "
                          f"stopped early; tasks that can: {', '.join(sorted(prunable))}")


def _positive_int(opt: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{opt}: invalid value {value!r}; use an integer >= 1")
