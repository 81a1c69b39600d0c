"""The reward: its one home (torch-free, imports nothing of ours but errors).

Every number the controller learns from is made here, and nowhere else:

1. **metric -> reward** (:func:`from_metric`): a child's validation metric becomes a reward
   that is higher for better children. The rule per metric is a row of :data:`RULES`
   (direction and scale, documented there); a task names its metric and calls
   :func:`from_metric`, it never scales a value itself. Rung values (early stopping) are on
   the same scale: a task passes ``from_metric(...)`` of its value at the rung.
2. **a failed child** (:func:`failure`, :func:`or_failure`): a bad pattern (the child raised,
   diverged or returned a non-finite value) gets the search's ``failure_reward`` (0.0 by
   default: the bottom of every rule's range, since every rule maps onto ``[0, inf)``).
   :func:`or_failure` is the one place where "no reward" (None, NaN) becomes that number.
3. **a child stopped at a rung** (:func:`truncated_reward`, **ours**): its value at rung
   ``r`` is not comparable with full-budget values (a network after 2 epochs is not one
   after 16), so it is moved onto the full-budget scale by a **learning-curve offset**:
   ``reward = v + D_r``, where ``D_r`` is the median, over the trials that have a value at
   ``r`` and at the full budget (the top rung; in the daemon, only trials already fed to
   the controller and the batch itself), of ``full - value at r``
   (:func:`rung_offsets`). With no such pair yet, ``D_r`` chains through the next rung that
   has one (``D_r = median(v_r' - v_r) + D_r'``); with none at all ``D_r = 0`` (the raw
   rung value: an under-estimate when curves rise, an over-estimate when they fall).

   Why this rule. Round 3 mapped a stopped child's rank at its rung to a quantile of the
   full-budget values. When those are tied (a space full of copies of ``none``, every one
   giving the same number) every stopped child got the same reward: 68 of 69 rewards of the
   round-3 LM search were 0.6119213, the advantages were zero, and the controller learned
   nothing. The offset is strictly increasing in ``v``, so two children with different rung
   values never tie, however the full-budget values are distributed; it is on the
   full-budget scale, so stopped and finished children of one batch are compared in one
   unit; and the median makes it robust to a few odd curves. It is **not capped** at the
   values of the promoted children: a cap at (say) the lowest full-budget value of a child
   promoted at that rung would map every stopped child above it onto that one number, the
   tie this rule exists to remove. No cap is needed for the order inside a rung: a stopped
   child's value is below the threshold a promoted one met, so ``v + D_r`` is below the
   promoted child's ``v' + D_r``.

:func:`learned_rewards` applies 2 and 3 to a batch of trials; it is what the daemon feeds
the controller (``adsearch worker`` hosts and Ray slots only run children: the daemon feeds
their results). The reward a child's metric maps to is stored with its result; the reward
the controller actually learned from is stored beside it as ``learned_reward``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from adsearch.errors import ConfigError

EPS = 1e-6
"""Rungs (in epochs) closer than this are the same rung (as in the store and the tasks)."""


@dataclass(frozen=True)
class RewardRule:
    """How one validation metric becomes a reward (higher is better).

    ``kind``: ``"identity"`` (reward = value), ``"inverse"`` (reward = scale / value),
    ``"exp_neg"`` (reward = exp(-value)) or ``"scaled"`` (reward = value / scale).
    ``higher_is_better`` is the metric's own direction, for tables and for calibration.
    """

    metric: str
    kind: str
    scale: float
    higher_is_better: bool
    doc: str

    def apply(self, value: float) -> float:
        v = float(value)
        if not math.isfinite(v):
            return math.nan
        if self.kind == "identity":
            return v
        if self.kind == "inverse":
            return self.scale / v if v > 0 else math.nan
        if self.kind == "exp_neg":
            return math.exp(-v)
        if self.kind == "scaled":
            return v / self.scale
        raise ConfigError(f"reward rule {self.metric!r}: unknown kind {self.kind!r}")

    def invert(self, reward: float) -> float:
        """The metric value a reward came from (for tables that show the metric)."""
        r = float(reward)
        if self.kind == "identity":
            return r
        if self.kind == "inverse":
            return self.scale / r if r > 0 else math.inf
        if self.kind == "exp_neg":
            return -math.log(r) if r > 0 else math.inf
        return r * self.scale


#: metric name -> rule. Every rule maps onto ``[0, inf)``, so a failure reward of 0.0 is
#: never above a real child's reward.
RULES: dict[str, RewardRule] = {
    r.metric: r for r in (
        RewardRule("val_acc", "identity", 1.0, True,
                   "validation accuracy in [0, 1] (image tasks; the paper's reward)"),
        RewardRule("val_loss", "exp_neg", 1.0, False,
                   "exp(-validation cross-entropy): the geometric-mean probability of the true "
                   "class, in (0, 1] (image tasks, reward_metric='val_loss'; ours)"),
        RewardRule("val_ppl", "inverse", 80.0, False,
                   "80 / validation perplexity (language models; ENAS's constant)"),
        RewardRule("val_bleu", "scaled", 100.0, True,
                   "validation BLEU / 100 (translation)"),
        RewardRule("reward", "identity", 1.0, True,
                   "the value a user's script or plug-in returns, taken as is (higher is better)"),
    )
}


def rule(metric: str) -> RewardRule:
    """The rule for ``metric``; an unknown name lists the known ones."""
    try:
        return RULES[metric]
    except KeyError:
        raise ConfigError(f"no reward rule for metric {metric!r}; known: "
                          f"{', '.join(sorted(RULES))}") from None


def from_metric(metric: str, value: float) -> float:
    """The reward of a child whose validation ``metric`` is ``value`` (NaN if not finite)."""
    return rule(metric).apply(value)


def failure(failure_reward: float) -> float:
    """The reward of a bad pattern: the search's ``failure_reward``, unchanged."""
    return float(failure_reward)


def or_failure(reward: float | None, failure_reward: float) -> float:
    """``reward`` as a float, or the failure reward when there is none (None or NaN).

    The one conversion of "no reward" into a number: a bad pattern, a child whose metric was
    not finite, a trial that ended without a result.
    """
    if reward is None:
        return failure(failure_reward)
    value = float(reward)
    return failure(failure_reward) if math.isnan(value) else value


# ------------------------------------------------------------ children stopped at a rung
class RungValue(Protocol):
    """What :func:`rung_offsets` reads of a stored rung value (``store.rung_rows``)."""

    @property
    def trial_id(self) -> int: ...
    @property
    def rung(self) -> float: ...
    @property
    def value(self) -> float: ...
    @property
    def promoted(self) -> bool | None: ...


def _key(rung: float) -> float:
    return round(float(rung), 6)


def rung_offsets(rows: Iterable[RungValue]) -> dict[float, float]:
    """The learning-curve offset ``D_r`` of every decision rung in ``rows`` (see module doc).

    ``rows`` are a search's rung values; the top rung's (the full budget) are those with
    ``promoted`` None. Keys are the rungs (epochs, rounded to 1e-6); a rung whose offset
    cannot be estimated yet (no trial went on from it to a rung that has one) maps to 0.0.
    """
    full: dict[int, float] = {}
    at: dict[float, dict[int, float]] = {}
    for row in rows:
        if row.promoted is None:
            full[int(row.trial_id)] = float(row.value)
        else:
            at.setdefault(_key(row.rung), {})[int(row.trial_id)] = float(row.value)
    rungs = sorted(at)
    known: dict[float, float] = {}
    for i in range(len(rungs) - 1, -1, -1):  # top-down: a rung may chain through a later one
        here = at[rungs[i]]
        direct = [full[t] - v for t, v in here.items() if t in full]
        if direct:
            known[rungs[i]] = statistics.median(direct)
            continue
        for later in rungs[i + 1:]:
            steps = [at[later][t] - v for t, v in here.items() if t in at[later]]
            if steps and later in known:
                known[rungs[i]] = statistics.median(steps) + known[later]
                break
    return {r: known.get(r, 0.0) for r in rungs}


def truncated_reward(value: float, rung: float, offsets: Mapping[float, float]) -> float:
    """The reward of a child stopped at ``rung`` with rung value ``value``: ``value + D_r``.

    ``offsets`` is :func:`rung_offsets` of the search's rung values; a rung it does not know
    gets ``D_r = 0`` (the raw value).
    """
    return float(value) + float(offsets.get(_key(rung), 0.0))


class ResultLike(Protocol):
    """What :func:`batch_rewards` reads of a stored result (``store.results``)."""

    @property
    def trial_id(self) -> int: ...
    @property
    def reward(self) -> float | None: ...
    @property
    def metrics(self) -> dict[str, Any]: ...


def batch_rewards(trial_ids: Sequence[int], results: Mapping[int, ResultLike],
                  rows: Sequence[RungValue], failure_reward: float) -> dict[int, float]:
    """The reward the controller learns from, for each of ``trial_ids`` (pure: no store).

    - no result, no reward (None/NaN) or a bad pattern: :func:`or_failure`;
    - stopped at a rung (``metrics["truncated_at_rung"]``): :func:`truncated_reward` of its
      value there (its rung row; the result's reward, on the same scale, when it has none:
      a cache hit reuses another trial's result but has no rung rows of its own);
    - otherwise (a full-budget child): its stored reward, unchanged.
    """
    offsets: dict[float, float] | None = None
    mine = {(int(r.trial_id), _key(r.rung)): float(r.value) for r in rows
            if r.promoted is not None}
    out: dict[int, float] = {}
    for tid in trial_ids:
        res = results.get(tid)
        m = (res.metrics or {}) if res is not None else {}
        if res is None or res.reward is None or m.get("bad_pattern"):
            out[tid] = or_failure(None, failure_reward)
            continue
        rung = m.get("truncated_at_rung")
        if m.get("truncated") and rung is not None:
            if offsets is None:
                offsets = rung_offsets(rows)
            value = mine.get((int(tid), _key(float(rung))), float(res.reward))
            out[tid] = truncated_reward(value, float(rung), offsets)
        else:
            out[tid] = or_failure(res.reward, failure_reward)
    return out


def learned_rewards(store: Any, search_id: int, trial_ids: Sequence[int],
                    failure_reward: float, fed: Iterable[int] | None = None) -> dict[int, float]:
    """The reward the controller learns from for each of ``trial_ids`` (one per id), from
    the store: the daemon's controller update calls this, and nothing else.

    Reads the trials' results and, when one of them was stopped at a rung, the search's rung
    values (:func:`batch_rewards`). ``fed`` (the daemon passes the trials it already fed the
    controller) limits the rung values to those of ``fed`` and of ``trial_ids``: finished
    trials, taken in the order they finished. Without it, every rung value in the store
    counts, including those of children still running, which a busy daemon reaches later
    than an idle one: the same seeded search then learned from different numbers.
    """
    ids = [int(t) for t in trial_ids]
    results = {r.trial_id: r for r in store.results(search_id, ids)}
    cut = any((r.metrics or {}).get("truncated") for r in results.values())
    rows = store.rung_rows(search_id) if cut else []
    if fed is not None:
        known = {int(t) for t in fed} | set(ids)
        rows = [r for r in rows if int(r.trial_id) in known]
    return batch_rewards(ids, results, rows, failure_reward)
