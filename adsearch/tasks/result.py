"""Records shared by every task. Pure data: no torch and no store, so the daemon and CLI can
use them; the only import of ours is the ground-floor rung rule (:mod:`adsearch.rungs`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from adsearch.rungs import EPS, RungOutcome, RungSink, rule


@dataclass(frozen=True)
class Budget:
    """How long one child trains. Whichever limit is reached first ends training.

    ``None`` for every field means "the task config's default" (its epochs or steps).

    Early stopping (set by the daemon, see :mod:`adsearch.daemon.pruning`): ``rungs`` are the
    decision rungs in epochs, ``top_rung`` the full budget; at each, the child records its
    validation value through ``reporter`` (a :class:`~adsearch.rungs.RungSink`, the store
    at ``store_url``) under ``trial_id`` and learns whether it goes on. Whoever builds the
    budget passes the reporter (``Budget.from_dict(spec, reporter=...)``); a budget with a
    ``store_url`` needs one. Every task decides *only* through :meth:`prune_now`, called once
    per evaluation; tasks in ``registry.PRUNABLE`` (and plug-ins that say
    ``supports_pruning``) call it.
    """

    epochs: float | None = None  # passes over the training split
    steps: int | None = None  # optimizer steps
    seconds: float | None = None  # wall-clock seconds of training (evaluation excluded)
    rungs: tuple[float, ...] | None = None  # decision rungs, epochs, ascending (None: off)
    top_rung: float | None = None  # the full budget in epochs, recorded without a decision
    keep: float = 1.0  # fraction of the children at a rung that go on (1 / eta)
    min_trials: int = 1  # no child stops at a rung holding fewer values than this
    store_url: str | None = None  # where rung values are recorded and read
    trial_id: int | None = None  # this child's trial
    reporter: RungSink | None = field(default=None, compare=False, repr=False)  # not in to_dict
    _state: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.rungs is not None:
            object.__setattr__(self, "rungs", tuple(float(r) for r in self.rungs))

    def prune_now(self, epoch: float, value: float, last: bool) -> bool:
        """True when a child evaluated at ``epoch`` (fractional allowed) with validation
        ``value`` (higher is better) should stop here. The one entry point of early
        stopping: call it after every evaluation.

        At the first evaluation at or after a rung not yet passed, the value is recorded
        through the reporter and the rung's live threshold decides
        (:func:`adsearch.rungs.decide`). ``last`` (training ends here anyway) records without
        stopping. A non-finite value is never recorded (the task reports the divergence).
        :meth:`truncation` describes a stop, for the result's metrics.

        Raises:
            ValueError: the budget names a ``store_url`` but was built without a reporter.
        """
        if self.store_url is None or self.trial_id is None or not (self.rungs or self.top_rung):
            return False
        if self.reporter is None:
            raise ValueError(f"Budget(store_url={self.store_url!r}) has no reporter: build it "
                             "with Budget.from_dict(spec, reporter=...) (see adsearch.rungs)")
        done: set[float] = self._state.setdefault("done", set())
        points = list(self.rungs or ()) + ([self.top_rung] if self.top_rung is not None else [])
        due = [r for r in points if r <= epoch + EPS and r not in done]
        if not due or not math.isfinite(value):
            return False
        done.update(due)
        rung = max(due)
        deciding = self.top_rung is None or rung < self.top_rung - EPS
        decision = self._record(rung, epoch, value, deciding)
        stop = deciding and not last and decision.promoted is False
        if stop:
            self._state["stop"] = (epoch, decision)
        return stop

    def _record(self, rung: float, epoch: float, value: float, deciding: bool) -> RungOutcome:
        assert self.reporter is not None  # checked by prune_now
        decide = rule(self.keep, self.min_trials) if deciding else None
        return self.reporter.record_rung(int(self.trial_id or 0), rung, epoch, value, decide)

    def truncation(self) -> dict[str, float]:
        """Metrics that mark a result stopped by :meth:`prune_now` (empty if it was not)."""
        if "stop" not in self._state:
            return {}
        epoch, d = self._state["stop"]
        return {"truncated": 1.0, "truncated_at_epoch": float(epoch), "truncated_at_rung": d.rung,
                "prune_below": float(d.threshold if d.threshold is not None else math.nan)}

    def __str__(self) -> str:
        """The budget in words, for logs (a child's log line, ``show``'s log tail):
        ``"3 epochs, at most 600 s; early stopping at epochs 1, 3 (keep 1/3)"``."""
        parts = []
        if self.epochs is not None:
            parts.append(f"{self.epochs:g} epoch{'s' if self.epochs != 1 else ''}")
        if self.steps is not None:
            parts.append(f"at most {self.steps} step{'s' if self.steps != 1 else ''}")
        if self.seconds is not None:
            parts.append(f"at most {self.seconds:g} s")
        text = ", ".join(parts) or "the task's default"
        if self.rungs:
            inv = 1 / self.keep if self.keep > 0 else 0.0
            keep = f"1/{round(inv)}" if inv and abs(inv - round(inv)) < 1e-6 else f"{self.keep:.0%}"
            text += (f"; early stopping at epochs {', '.join(f'{r:g}' for r in self.rungs)} "
                     f"(keep {keep})")
        elif self.top_rung is not None:
            text += f"; full budget recorded at epoch {self.top_rung:g}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The budget as JSON data (the child spec's ``budget``), without its reporter."""
        data = {f.name: getattr(self, f.name) for f in fields(self)
                if not f.name.startswith("_") and f.name != "reporter"}
        if self.rungs is not None:
            data["rungs"] = list(self.rungs)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, reporter: RungSink | None = None) -> Budget:
        """The budget of :meth:`to_dict`'s ``data``, recording its rung values through
        ``reporter`` (needed when ``data`` names a ``store_url``)."""
        return cls(**(data or {}), reporter=reporter)


@dataclass(frozen=True)
class ChildResult:
    """What one child run returns.

    ``reward`` is what the controller maximises (validation accuracy, a decreasing function
    of validation perplexity, or validation BLEU; see each task). ``metrics`` holds named
    scalars (``val_acc``, ``val_ppl``, ``test_acc``...), ``curve`` one dict per evaluation
    point (``{"step": ..., "epoch": ..., "train_loss": ..., "val_metric": ...}``), and
    ``seconds`` the wall time of the whole child, evaluation included.
    """

    reward: float
    metrics: dict[str, float] = field(default_factory=dict)
    curve: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def finite(self) -> bool:
        return math.isfinite(self.reward)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reward": self.reward,
            "metrics": dict(self.metrics),
            "curve": [dict(c) for c in self.curve],
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChildResult:
        return cls(
            reward=float(data["reward"]),
            metrics=dict(data.get("metrics", {})),
            curve=list(data.get("curve", [])),
            seconds=float(data.get("seconds", 0.0)),
        )
