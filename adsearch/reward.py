"""The reward: its one home (torch-free, imports nothing of ours but errors).

Every number the controller learns from is made here, and nowhere else:

1. **metric -> reward** (:func:`from_metric`): a child's validation metric becomes a reward
   that is higher for better children. The rule per metric is a row of :data:`RULES`
   (direction and scale, documented there); a task names its metric and calls
   :func:`from_metric`, it never scales a value itself.
2. **a failed child** (:func:`failure`): a bad pattern (the child raised, diverged or
   returned a non-finite value) gets the search's ``failure_reward`` (0.0 by default: the
   bottom of every rule's range, since every rule maps onto ``[0, inf)``).
3. **a child stopped at a rung**: see :func:`learned_rewards` (added with the rule for
   truncated children).

The reward a child's metric maps to is stored with its result; the reward the controller
actually learned from (after 2 and 3) is stored beside it as ``learned_reward``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from adsearch.errors import ConfigError


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
