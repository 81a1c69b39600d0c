"""The rung rule of early stopping: which rungs exist, and who goes on at one. No torch, no
store: the standard library only, so a task, the daemon, the store and the trial API can all
use it (the ground floor of ``docs/architecture.md``, "Layers").

Rungs are budgets in epochs. ASHA (Li et al. 2020; the wiring is **ours**, see
:mod:`adsearch.daemon.pruning`) gives the decision rungs ``R, R*eta, R*eta**2, ...`` below
the full budget (:func:`rungs_for`). A child that reaches a decision rung goes on when its
value is at or above the ``1 - keep`` quantile of every value recorded at that rung so far,
its own included (:func:`decide`, the one promotion rule).

A child records its values through a *reporter* it is given: its
:class:`~adsearch.tasks.result.Budget` calls ``reporter.record_rung(trial_id, rung, epoch,
value, rule)`` (a :class:`RungSink`; :class:`adsearch.store.Store` is one, and
:class:`LazySink` opens one at the first rung). Whoever builds the budget (the daemon's child
process, the trial API of script mode) passes it, so the child's own code imports no store.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, Protocol

EPS = 1e-6  # epochs (rungs) closer than this are the same point

#: ``decide(values, own) -> (promoted, threshold)``; ``values`` includes ``own``.
Decide = Callable[[list[float], float], "tuple[bool, float | None]"]


def rungs_for(min_epochs: float, max_epochs: float, eta: float) -> tuple[float, ...]:
    """The decision rungs ``R, R*eta, ...`` strictly below ``max_epochs`` (in epochs)."""
    out: list[float] = []
    r = float(min_epochs)
    while r < max_epochs - EPS:
        out.append(round(r, 9))
        r *= eta
    return tuple(out)


def value_at(curve: list[dict[str, Any]], epoch: float) -> float | None:
    """The ``val_metric`` of the first curve point at or after ``epoch``; None if none."""
    for point in curve:
        e, v = point.get("epoch"), point.get("val_metric")
        if e is not None and v is not None and float(e) >= epoch - EPS:
            v = float(v)
            return v if math.isfinite(v) else None
    return None


def quantile(values: list[float], q: float) -> float:
    """Linear-interpolated ``q`` quantile of ``values`` (non-empty)."""
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def decide(values: list[float], own: float, *, keep: float,
           min_trials: int) -> tuple[bool, float | None]:
    """The one promotion rule: ``(promoted, threshold)`` for a child whose value at a rung
    is ``own``, given every value recorded at that rung (``values``, ``own`` included).

    ``keep`` is the promoted fraction (``1/eta``); the threshold is the ``1 - keep`` quantile
    of ``values``, and None (everyone goes on) while fewer than ``min_trials`` are recorded.
    """
    if len(values) < min_trials:
        return True, None
    threshold = quantile(values, 1.0 - keep)
    return own >= threshold - 1e-12, threshold


def rule(keep: float, min_trials: int) -> Decide:
    """:func:`decide` bound to a schedule's ``keep`` and ``min_trials``."""
    return functools.partial(decide, keep=keep, min_trials=min_trials)


class RungOutcome(Protocol):
    """What a sink answers for one record (:class:`adsearch.store.rungs.RungDecision`)."""

    @property
    def rung(self) -> float: ...
    @property
    def promoted(self) -> bool | None: ...
    @property
    def threshold(self) -> float | None: ...


class RungSink(Protocol):
    """Where a child's rung values go and where the rule sees every child's: the store."""

    def record_rung(self, trial_id: int, rung: float, epoch: float, value: float,
                    decide: Decide | None) -> RungOutcome:
        """Store ``value`` (at ``rung``, evaluated at ``epoch``, in epochs) and apply
        ``decide`` to the rung's values (None: record without deciding)."""
        ...


class LazySink:
    """A :class:`RungSink` opened by ``open_sink()`` at its first record, then kept: a child
    that never reaches a rung never opens the store."""

    def __init__(self, open_sink: Callable[[], RungSink]) -> None:
        self._open = open_sink
        self._sink: RungSink | None = None

    def record_rung(self, trial_id: int, rung: float, epoch: float, value: float,
                    decide: Decide | None) -> RungOutcome:
        if self._sink is None:
            self._sink = self._open()
        return self._sink.record_rung(trial_id, rung, epoch, value, decide)


__all__ = ["EPS", "Decide", "LazySink", "RungOutcome", "RungSink", "decide", "quantile",
           "rule", "rungs_for", "value_at"]
