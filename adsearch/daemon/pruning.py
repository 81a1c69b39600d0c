"""Early stopping by asynchronous successive halving (ASHA, Li et al. 2020; the wiring is
**ours**, the paper trains every child fully).

Rungs are budgets in epochs. ``--scheduler asha --min-epochs R --max-epochs M --eta E``
gives the decision rungs ``R, R*E, R*E**2, ...`` (those below ``M``) and the top rung ``M``
(the full budget). A child that reaches a decision rung records its validation value there
in the store and, in the same transaction, learns whether it goes on: it does when its value
is at or above the ``1 - 1/E`` quantile of every value recorded at that rung so far, its own
included (:func:`adsearch.rungs.decide`, the rule and its constants, torch- and store-free),
i.e. when it is in the top ``1/E``. Otherwise it stops there and
its result is marked ``truncated`` (``truncated_at_epoch``, ``truncated_at_rung``,
``prune_below`` = the threshold it missed). No child is stopped at a rung until it holds
``min_trials`` values (``ceil(E)`` for ASHA). The top rung's value is recorded without a
decision, so ``status`` and the controller's reward for a stopped child
(:func:`adsearch.reward.rung_offsets`) know the full-budget values.

``--prune-at-epoch E --prune-quantile q`` (the older one-rung option) is the same mechanism
with one decision rung ``E``, keep fraction ``1 - q`` and ``min_trials = prune_min_trials``.

Decisions use the rung values known when the child gets there (live, from the store), not
values frozen at launch. The child reaches the store through its budget (``store_url`` and
``trial_id`` in the child spec, and the reporter the child process hands it,
:func:`adsearch.daemon.child.run`); a retried child replaces its earlier rung rows.

Built-in tasks in :data:`adsearch.tasks.registry.PRUNABLE` honour it, and task plug-ins
whose class sets ``supports_pruning = True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Schedule:
    """A search's rungs: ``rungs`` (decision rungs, epochs, ascending), ``top`` (the full
    budget in epochs, recorded without a decision; None when unknown), ``keep`` (fraction
    promoted at each rung) and ``min_trials``."""

    rungs: tuple[float, ...]
    top: float | None
    keep: float
    min_trials: int


class Scheduler:
    """Writes each child's budget: the search's child budget plus its rung schedule and
    where to record rung values (the store URL and the trial id)."""

    def __init__(self, cfg: Any, store_url: str) -> None:
        self.cfg = cfg
        self.store_url = store_url
        self.schedule: Schedule | None = cfg.schedule()

    def budget(self, trial_id: int, *, rungs: bool = True) -> dict[str, Any]:
        """The ``budget`` dict of the child spec of ``trial_id``; ``rungs`` False: the full
        budget with no early stopping (a re-check trial, adsearch.daemon.recheck)."""
        budget = self.cfg.child_budget().to_dict()
        if self.schedule is not None and rungs:
            s = self.schedule
            budget.update(rungs=list(s.rungs), top_rung=s.top, keep=s.keep,
                          min_trials=s.min_trials, store_url=self.store_url, trial_id=trial_id)
        return budget
