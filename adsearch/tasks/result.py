"""Records shared by every task. Pure data: no torch, so the daemon and CLI can use them."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Budget:
    """How long one child trains. Whichever limit is reached first ends training.

    ``None`` for every field means "the task config's default" (its epochs or steps).

    ``prune_epoch``/``prune_below`` (set by the daemon, see :mod:`adsearch.daemon.pruning`):
    a child whose validation reward at epoch ``prune_epoch`` is below ``prune_below`` stops
    there and reports ``truncated = 1``. Tasks in ``registry.PRUNABLE`` honour it, and
    plug-ins whose class sets ``supports_pruning = True`` (docs/tasks.md).
    """

    epochs: float | None = None  # passes over the training split
    steps: int | None = None  # optimizer steps
    seconds: float | None = None  # wall-clock seconds of training (evaluation excluded)
    prune_epoch: float | None = None  # early-stopping check point, in epochs
    prune_below: float | None = None  # stop at prune_epoch when the reward is below this

    def prune_now(self, epoch: float, reward: float, last: bool) -> bool:
        """True when a child at ``epoch`` with validation ``reward`` should stop here."""
        return (self.prune_epoch is not None and self.prune_below is not None and not last
                and abs(epoch - self.prune_epoch) < 1e-6 and reward < self.prune_below)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Budget:
        return cls(**(data or {}))


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
