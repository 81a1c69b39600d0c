"""Early stopping of clearly bad children (**ours**; the paper trains every child fully).

With ``--prune-at-epoch E`` a child whose validation reward at epoch ``E`` falls below the
``--prune-quantile`` (default 0.25) of the rewards *every earlier finished child* had at
epoch ``E`` stops there. Its reward is the one it had when stopped, and its metrics carry
``truncated = 1`` and ``truncated_at_epoch = E``, so the controller, ``status``, ``show``
and ``export`` can tell a truncated reward from a full one (``export --best`` skips them).

The threshold includes truncated children (they were measured at epoch ``E`` too), so it
does not ratchet upwards as the survivors improve. No child is stopped until
``prune_min_trials`` finished children have a value at epoch ``E``.

Only tasks listed in :data:`adsearch.tasks.registry.PRUNABLE` honour the rule (the image
tasks, whose curve has one point per epoch and whose reward is that point's accuracy), and
task plug-ins whose class sets ``supports_pruning = True``.
"""

from __future__ import annotations

import math
from typing import Any

EPS = 1e-6


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


def threshold(curves: list[list[dict[str, Any]]], epoch: float, q: float, min_trials: int) -> float | None:
    """The pruning threshold from finished children's curves; None until enough have one."""
    return _threshold([v for c in curves if (v := value_at(c, epoch)) is not None], q, min_trials)


def _threshold(values: list[float], q: float, min_trials: int) -> float | None:
    return quantile(values, q) if len(values) >= min_trials else None


class Pruner:
    """Computes each child's budget, with the pruning threshold of the moment.

    Incremental: each call reads the ids of finished trials (one light query) and loads the
    curves of only those it has not seen yet.
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self._seen: set[int] = set()
        self._values: list[float] = []  # value at prune_epoch of each finished child that has one
        self._below: float | None = None

    def below(self, store: Any, search_id: int) -> float | None:
        if self.cfg.prune_epoch is None:
            return None
        new = [tid for tid, _ in store.reward_series(search_id) if tid not in self._seen]
        if new:
            for r in store.results(search_id, new):
                self._seen.add(r.trial_id)
                if r.metrics.get("bad_pattern") or r.metrics.get("diverged"):
                    continue
                if (v := value_at(r.curve, self.cfg.prune_epoch)) is not None:
                    self._values.append(v)
            self._below = _threshold(self._values, self.cfg.prune_quantile, self.cfg.prune_min_trials)
        return self._below

    def budget(self, store: Any, search_id: int) -> dict[str, Any]:
        """The ``budget`` dict of a child spec about to be written."""
        budget = self.cfg.child_budget().to_dict()
        below = self.below(store, search_id)
        if below is not None:
            budget.update(prune_epoch=self.cfg.prune_epoch, prune_below=below)
        return budget
