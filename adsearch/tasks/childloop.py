"""One child run's bookkeeping, shared by the hand-written training loops (image, LM, translation).

Each task keeps its own data order, its own optimizer step and its own evaluation. A
:class:`ChildRun` holds what the three loops share:

- **Length.** ``total`` optimizer steps, from the :class:`~adsearch.tasks.result.Budget` or the
  config's default epochs (:func:`~adsearch.tasks.common.total_steps`), and the training-time
  limit ``Budget.seconds`` on a :class:`~adsearch.tasks.common.Clock` that is paused during
  every validation: :meth:`ChildRun.going`, :meth:`ChildRun.progress` (DropBlock's schedule).
- **Divergence.** A non-finite training loss ends the child: :meth:`ChildRun.diverged` is its
  result, reward 0.0 with ``metrics["diverged"] = 1.0`` and ``diverged_step``.
- **Learning curve and early stopping.** :meth:`ChildRun.validate` takes one curve point: it
  calls the task's measurement (a callback returning the point and its value on the reward
  scale, higher is better) with the clock paused, appends the point to ``curve`` and hands
  the value to ``Budget.prune_now``, the one entry point of early stopping; a stop sets
  ``stopped`` and the truncation metrics. A task may also append points that validate nothing
  (the translation task's epoch ends) to ``curve`` directly; they are never chosen.
- **keep_best** (training length tuned on validation; not early stopping, which is rungs):
  after each validated point whose value beats every earlier one (strictly), a copy of the
  model's weights is kept; :meth:`ChildRun.finish` then reports the best validated point,
  restores its weights (so the task's test evaluation sees them) and sets
  ``metrics["best_epoch"]``. A tie with the last point keeps the last one. Without
  keep_best the reported point is the last validated one. The schedule still runs over the
  whole budget.
- **Final metrics.** :meth:`ChildRun.finish` adds ``steps`` and ``epochs`` (run, not chosen);
  :meth:`ChildRun.result` wraps reward, metrics, curve and wall seconds in a ChildResult.

When a curve point is taken (each task decides, at exactly these times, and calls
:meth:`ChildRun.validate`):

- **image** (:mod:`adsearch.tasks.image`): at the end of every ``eval_every``-th epoch, of
  every epoch that crossed an early-stopping rung (:meth:`ChildRun.crossed_rung`) and of the
  last epoch (steps or time spent); and once more at the end when the last epoch end was not
  validated (only when the time limit ran out between the two checks).
- **LM** (:mod:`adsearch.tasks.lm`): after every ``total // (curve_points + 1)``-th step and at
  each rung step (:meth:`ChildRun.at_rung_step`), both only before the last step, on
  ``curve_eval_tokens`` validation tokens (``max_eval_tokens`` with ``keep_best``, so that
  every point is measured on the final evaluation's tokens); then once at the end on
  ``max_eval_tokens`` unless a rung stopped the child.
- **translation** (:mod:`adsearch.tasks.translation`): at each rung step before the last
  (validation BLEU); at the end of every epoch but the last a point with the training loss
  only (validated instead, BLEU, when ``keep_best`` is on and that step has no point yet);
  then once at the end unless a rung stopped the child.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from adsearch.tasks.common import (
    Clock,
    diverged_metrics,
    out_of_time,
    progress,
    rung_steps,
    total_steps,
)
from adsearch.tasks.result import Budget, ChildResult

#: a task's validation: ``(curve point, value)``; the value is on the reward scale (higher is
#: better) and is what early stopping and keep_best compare
Measure = Callable[[], tuple[dict[str, float], float]]


class ChildRun:
    """The shared state of one child's training: step count, curve, metrics, best weights.

    ``clock`` is the child's clock, started before its data was loaded (``Budget.seconds``
    counts from there); ``steps_per_epoch`` optimizer steps make one epoch;
    ``default_epochs`` is the config's length when the budget names none; ``model`` is the
    network whose weights keep_best copies and restores.
    """

    def __init__(
        self,
        clock: Clock,
        budget: Budget | None,
        steps_per_epoch: int,
        default_epochs: float | None,
        model: torch.nn.Module,
        keep_best: bool = False,
    ) -> None:
        self.clock = clock
        self.budget = budget
        self.per_epoch = steps_per_epoch
        self.total = total_steps(budget, steps_per_epoch, default_epochs)
        self.seconds = budget.seconds if budget else None  # training seconds, or None
        self.model = model
        self.keep_best = keep_best
        self.step = 0  # optimizer steps taken
        self.losses: list[float] = []  # training losses since the last mean_loss()
        self.curve: list[dict[str, float]] = []
        self.metrics: dict[str, float] = {
            "params": float(sum(p.numel() for p in model.parameters())), "diverged": 0.0}
        self.stopped = False  # an early-stopping rung stopped this child
        self._rung_steps = rung_steps(budget, steps_per_epoch)
        self._rungs_left = sorted((budget.rungs or ()) if budget is not None else ())
        self._last: tuple[dict[str, float], float] | None = None  # last validated point
        self._best: tuple[dict[str, float], float, dict[str, torch.Tensor]] | None = None

    # ------------------------------------------------------------------ length
    @property
    def epoch(self) -> float:
        """Epochs trained so far (fractional)."""
        return self.step / self.per_epoch

    def going(self) -> bool:
        """True while steps are left and the training time (evaluation excluded) is not spent."""
        return self.step < self.total and not out_of_time(self.clock, self.seconds)

    def progress(self) -> float:
        """Training progress in [0, 1] for ``set_progress``: the larger of the step and the
        time fractions."""
        return progress(self.step, self.total, self.clock, self.seconds)

    def took_step(self, loss: float) -> None:
        """Count one optimizer step whose training loss (finite) was ``loss``."""
        self.step += 1
        self.losses.append(loss)

    def mean_loss(self, empty: float = 0.0) -> float:
        """Mean training loss since the last call (``empty`` when no step was taken), and
        start a new mean."""
        mean = sum(self.losses) / len(self.losses) if self.losses else empty
        self.losses = []
        return mean

    # ------------------------------------------------------------------ rungs
    def at_rung_step(self) -> bool:
        """True at the optimizer step where the child crosses a rung (tasks that evaluate
        between epochs; :func:`~adsearch.tasks.common.rung_steps`)."""
        return self.step in self._rung_steps

    def crossed_rung(self) -> bool:
        """True when a rung not yet passed lies at or before the current epoch (tasks that
        evaluate at epoch ends); marks those rungs passed."""
        crossed = False
        while self._rungs_left and self._rungs_left[0] <= self.epoch + 1e-9:
            self._rungs_left.pop(0)
            crossed = True
        return crossed

    # ------------------------------------------------------------------ curve
    def validate(self, measure: Measure, last: bool) -> bool:
        """Take one validated curve point from ``measure`` (clock paused), keep the weights
        when keep_best and it is the best so far, and ask ``Budget.prune_now`` (``last``:
        training ends here anyway). True when the child is to stop here."""
        with self.clock.pause():
            point, value = measure()
        self.curve.append(point)
        self._last = (point, value)
        if self.keep_best and (self._best is None or value > self._best[1]):
            weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self._best = (point, value, weights)
        if self.budget is not None and self.budget.prune_now(self.epoch, value, last=last):
            self.metrics.update(self.budget.truncation())
            self.stopped = True
        return self.stopped

    def diverged(self) -> ChildResult:
        """The result of a child whose training loss became non-finite: reward 0.0."""
        self.metrics.update(diverged_metrics(self.step))
        return self.result(0.0)

    def finish(self) -> dict[str, float]:
        """The reported curve point: the last validated one or, with keep_best, the best
        validated one when it beats the last (its weights are then restored into the model).
        Adds ``steps``, ``epochs`` and, with keep_best, ``best_epoch`` to ``metrics``."""
        if self._last is None:
            raise RuntimeError("ChildRun.finish before any validated curve point")
        chosen, value = self._last
        if self._best is not None and self._best[1] > value:
            chosen = self._best[0]
            self.model.load_state_dict(self._best[2])
        self.metrics.update(steps=float(self.step), epochs=self.epoch)
        if self.keep_best:
            self.metrics["best_epoch"] = chosen["epoch"]
        return chosen

    def result(self, reward: float) -> ChildResult:
        """The child's result: ``reward``, the metrics, the curve and the wall seconds so far."""
        return ChildResult(reward, self.metrics, self.curve, self.clock.wall())
