"""The trial API of script mode: what a user's own training script calls.

``adsearch start --script "python train.py" --space conv-4`` runs the command once per
trial (see :mod:`adsearch.tasks.script`); the command finds its trial through the
environment variable ``ADSEARCH_TRIAL``, the path of a JSON spec file::

    import adsearch.trial

    trial = adsearch.trial.current()
    model = build_model()
    handle = adsearch.sites.attach(model, trial.patterns)   # None: no dropout
    for epoch in range(1, epochs + 1):
        acc = train_one_epoch(model)
        if trial.report(epoch, acc):                         # early stopping wants a stop
            break
    trial.finish(acc)

**Standalone** (no ``ADSEARCH_TRIAL``): the patterns come from ``--pattern FILE`` on the
script's own command line (read without removing it from ``sys.argv``) or from the
environment variable ``ADSEARCH_PATTERN``, else there are none; ``report`` always returns
False and ``finish`` prints the result. The same script then runs by hand (to debug it) and,
with an exported pattern, as the transfer run.

Importing this module imports no torch (only ``Trial.device`` in a standalone run looks
for CUDA). An uncaught exception in the script is written to the trial's directory by a
``sys.excepthook`` set in :func:`current`, so the daemon can tell a bug from a bad pattern.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from adsearch.errors import AdsearchError, ConfigError
from adsearch.patterns import (
    PatternSet,
    Provenance,
    SearchSpace,
    decode_patterns,
    load_patternset,
)
from adsearch.rungs import LazySink, RungSink
from adsearch.tasks.result import Budget
from adsearch.trial_files import (
    CURVE_FILE,
    ENV_PATTERN,
    ENV_TRIAL,
    EXCEPTION_FILE,
    RESULT_FILE,
    SITES_FILE,
)


class TrialError(AdsearchError):
    """The trial API was misused (finish twice, a non-number reward, a bad spec file)."""


@dataclass
class Trial:
    """One trial as a script sees it.

    ``patterns`` is a :class:`~adsearch.patterns.PatternSet` (one pattern per dropout site),
    None (train without dropout), or, in the baseline runs of ``adsearch verify``, a baseline
    spec dict such as ``{"kind": "dropblock", "drop_prob": 0.1, "block_size": 5}``: pass it to
    ``adsearch.sites.attach`` (or ``adsearch.ops.make_dropout``) as it is; ``seed`` the
    trial's seed; ``budget`` the daemon's child budget (``epochs``/``steps``/``seconds`` may
    be None: the script's own defaults; it records rung values in the search's store);
    ``trial_id`` None in a standalone run.
    """

    patterns: PatternSet | dict[str, Any] | None
    seed: int = 0
    budget: Budget = field(default_factory=Budget)
    trial_id: int | None = None
    attempt: int = 1
    threads: int = 0  # CPU threads the daemon gave this child (0: not set)
    dir: Path | None = None  # where report/finish write; None: standalone
    _device: str | None = None
    _finished: bool = False
    _last: tuple[float, float] | None = None

    @property
    def standalone(self) -> bool:
        return self.dir is None

    @property
    def device(self) -> str:
        """``"cuda"`` or ``"cpu"``: the daemon's choice, or in a standalone run CUDA when
        torch sees it (torch is imported only then)."""
        if self._device is None:
            try:
                import torch

                self._device = "cuda" if torch.cuda.is_available() else "cpu"
            except ImportError:  # pragma: no cover - torch is a dependency
                self._device = "cpu"
        return self._device

    def report(self, step: float, value: float) -> bool:
        """Record the curve point ``value`` (the validation reward, higher is better) at
        ``step`` (an epoch count, fractions allowed: early stopping checks the rungs of
        ``--scheduler asha`` or ``--prune-at-epoch`` against it, live, in the search's store).
        Returns True when the daemon's early-stopping rule wants this child to stop now;
        then call :meth:`finish` with ``value`` (or just exit: the reward is then ``value``).
        """
        step, value = _number("report: step", step), _number("report: value", value)
        self._last = (step, value)
        if self.dir is None:
            return False
        last = self.budget.epochs is not None and step >= self.budget.epochs - 1e-6
        stop = self.budget.prune_now(step, value, last)
        point: dict[str, Any] = {"step": step, "epoch": step, "val_metric": value}
        if stop:  # the rung decision, for the result's metrics (adsearch.tasks.script)
            point["pruned"] = self.budget.truncation()
        with open(self.dir / CURVE_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(point, allow_nan=True) + "\n")
        return stop

    def record_sites(self, maps: Sequence[Sequence[int] | None],
                     sources: Sequence[str] | None = None) -> None:
        """Record the map each dropout site's pattern acts on: per site ``(H, W)`` in px
        (conv) or ``(T, D)`` (seq), None where unknown. :func:`adsearch.sites.attach` calls it
        (from its ``example_input``, or at the first forward pass); call it yourself only
        where you insert the ops by hand. ``adsearch show`` and ``export`` then draw this
        search's patterns at these sides instead of the space's defaults. The last call
        wins; nothing is written in a standalone run."""
        rows = [None if m is None else [int(v) for v in m] for m in maps]
        if any(r is not None and (len(r) != 2 or min(r) < 1) for r in rows):
            raise TrialError(f"trial.record_sites: {list(maps)!r}: expected per site two "
                             "positive integers (H, W) or None")
        if self.dir is None:
            return
        from adsearch.atomic import write_json_atomic

        write_json_atomic(self.dir / SITES_FILE,
                          {"maps": rows, "sources": [str(v) for v in (sources or [])]},
                          durable=False)

    def finish(self, reward: float, metrics: dict[str, float] | None = None) -> None:
        """Record the trial's result: ``reward`` (what the search maximises, e.g. the final
        validation accuracy) and named scalar ``metrics``. Call it once, at the end."""
        if self._finished:
            raise TrialError("trial.finish() was called twice; call it once, at the end")
        reward = _number("finish: reward", reward)
        clean = {str(k): _number(f"finish: metrics[{k!r}]", v) for k, v in (metrics or {}).items()}
        self._finished = True
        if self.dir is None:
            shown = " ".join(f"{k}={v:.4g}" for k, v in clean.items())
            print(f"[adsearch.trial] standalone result: reward={reward:.6g} {shown}".rstrip(),
                  flush=True)
            return
        from adsearch.atomic import write_json_atomic

        write_json_atomic(self.dir / RESULT_FILE, {"reward": reward, "metrics": clean},
                          durable=False, allow_nan=True)


def _number(what: str, value: Any) -> float:
    try:
        out = float(value)  # also 0-d tensors and numpy scalars
    except (TypeError, ValueError):
        raise TrialError(f"trial.{what}: {value!r} is not a number; pass a float, e.g. "
                         "acc.item()") from None
    return out  # a non-finite value is kept: it marks a diverged run (a bad pattern)


def pattern_arg(argv: list[str]) -> str | None:
    """The value of ``--pattern FILE`` or ``--pattern=FILE`` in ``argv`` (left in place)."""
    for i, arg in enumerate(argv):
        if arg == "--pattern" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--pattern="):
            return arg.split("=", 1)[1]
    return None


_current: Trial | None = None


def current() -> Trial:
    """The trial this process runs: from ``$ADSEARCH_TRIAL`` under the daemon, else a
    standalone trial (patterns from ``--pattern FILE`` or ``$ADSEARCH_PATTERN``, or none).
    The same object is returned on every call."""
    global _current
    if _current is None:
        spec = os.environ.get(ENV_TRIAL)
        _current = _from_spec(Path(spec)) if spec else _standalone()
        if _current.dir is not None:
            _install_excepthook(_current.dir)
    return _current


def _standalone() -> Trial:
    path = pattern_arg(sys.argv[1:]) or os.environ.get(ENV_PATTERN) or None
    return Trial(patterns=load_patternset(path) if path else None)


def _from_spec(path: Path) -> Trial:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        space = SearchSpace.from_name(doc["space"])
        pats = decode_patterns(doc["patterns"], space)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"${ENV_TRIAL}={path}: not a readable trial spec ({exc}); it is "
                          "written by `adsearch start --script`, unset it to run by hand") from None
    baseline = doc.get("baseline")  # adsearch verify: a hand-designed baseline, not patterns
    ps: PatternSet | dict[str, Any] | None
    if isinstance(baseline, dict):
        ps = None if baseline.get("kind") == "none" else dict(baseline)
    else:
        ps = PatternSet(space, pats, Provenance(search=doc.get("search"), trial_id=doc["trial_id"]))
    budget = doc.get("budget") or {}
    return Trial(patterns=ps, seed=int(doc["seed"]),
                 budget=Budget.from_dict(budget, reporter=_reporter(budget.get("store_url"))),
                 trial_id=int(doc["trial_id"]), attempt=int(doc.get("attempt", 1)),
                 threads=int(doc.get("threads") or 0), dir=path.parent, _device=doc["device"])


def _reporter(store_url: str | None) -> LazySink | None:
    """Where ``report`` records rung values: the search's store, opened at the first rung."""
    if store_url is None:
        return None

    def open_store() -> RungSink:
        from adsearch.store import Store

        return Store(store_url)

    return LazySink(open_store)


def _install_excepthook(where: Path) -> None:
    """Write an uncaught exception's type name and message to ``where`` (then the usual
    traceback): the script task reads it to classify the failure."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        try:
            text = "".join(traceback.format_exception(kind, exc, tb))
            from adsearch.atomic import write_json_atomic

            write_json_atomic(where / EXCEPTION_FILE,
                              {"type": kind.__name__, "message": str(exc)[:1000],
                               "traceback": text[-4000:]}, durable=False)
        except Exception:  # noqa: BLE001 - never hide the user's own error
            pass
        previous(kind, exc, tb)

    sys.excepthook = hook


__all__ = ["ENV_PATTERN", "ENV_TRIAL", "Trial", "TrialError", "current", "pattern_arg"]
