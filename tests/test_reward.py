"""The reward's one home (adsearch/reward.py): metric rules, the failure reward, and the
learning-curve offset that moves a child stopped at a rung onto the full-budget scale."""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass, field
from typing import Any

import pytest

from adsearch import reward
from adsearch.reward import (
    batch_rewards,
    from_metric,
    or_failure,
    rung_offsets,
    truncated_reward,
)


@dataclass(frozen=True)
class Row:
    """A rung value as ``store.rung_rows`` returns it (the fields the rule reads)."""

    trial_id: int
    rung: float
    value: float
    promoted: bool | None


@dataclass(frozen=True)
class Res:
    """A result as ``store.results`` returns it (the fields the rule reads)."""

    trial_id: int
    reward: float | None
    metrics: dict[str, Any] = field(default_factory=dict)


def test_metric_rules_keep_the_tasks_scales() -> None:
    assert from_metric("val_acc", 0.625) == 0.625
    assert from_metric("val_ppl", 100.0) == pytest.approx(0.8)  # ENAS: 80 / ppl
    assert from_metric("val_bleu", 31.0) == pytest.approx(0.31)
    assert from_metric("val_loss", 0.0) == 1.0 and from_metric("val_loss", math.log(2)) == 0.5
    assert from_metric("reward", -3.5) == -3.5
    for metric in ("val_acc", "val_ppl", "val_bleu", "reward"):
        assert math.isnan(from_metric(metric, math.nan))
        assert math.isnan(from_metric(metric, math.inf))
    with pytest.raises(reward.ConfigError, match="no reward rule for metric 'bleu'.*val_bleu"):
        from_metric("bleu", 1.0)


def test_no_reward_becomes_the_failure_reward_in_one_place() -> None:
    assert or_failure(None, -0.5) == -0.5 and or_failure(math.nan, 0.0) == 0.0
    assert or_failure(0.25, -0.5) == 0.25 and reward.failure(0.1) == 0.1


def _curves(n: int, rungs: tuple[float, ...], top: float, seed: int) -> list[Row]:
    """n trials: value at epoch e = a_i + g(e) (a per-trial level, a shared curve g),
    each going on to the top rung with probability 1/2."""
    rng = random.Random(seed)
    rows = []
    for t in range(n):
        a = rng.uniform(0.0, 0.3)
        for r in rungs:
            rows.append(Row(t, r, a + math.log1p(r) / 4, True))
        if rng.random() < 0.5:
            rows.append(Row(t, top, a + math.log1p(top) / 4, None))
    return rows


def test_offset_is_the_median_gain_to_the_full_budget() -> None:
    rows = _curves(40, (1.0, 3.0), 9.0, seed=0)
    off = rung_offsets(rows)
    # parallel curves: the gain from rung r to the top is the same for every trial
    assert off[1.0] == pytest.approx((math.log1p(9) - math.log1p(1)) / 4)
    assert off[3.0] == pytest.approx((math.log1p(9) - math.log1p(3)) / 4)
    # a stopped child's estimate is its full-budget value, exactly, on parallel curves
    assert truncated_reward(0.2 + math.log1p(1) / 4, 1.0, off) == pytest.approx(
        0.2 + math.log1p(9) / 4)


def test_offset_chains_through_a_later_rung_and_falls_back_to_zero() -> None:
    # nobody with a rung-1 value reached the top, but trial 5 went from rung 1 to rung 3
    # and trials 6, 7 went from rung 3 to the top
    rows = [Row(5, 1.0, 0.2, True), Row(5, 3.0, 0.5, False),
            Row(6, 3.0, 0.4, True), Row(6, 9.0, 0.45, None),
            Row(7, 3.0, 0.6, True), Row(7, 9.0, 0.75, None),
            Row(8, 1.0, 0.1, False)]
    off = rung_offsets(rows)
    assert off[3.0] == pytest.approx(statistics.median([0.05, 0.15]))
    assert off[1.0] == pytest.approx(0.3 + off[3.0])  # 0.5 - 0.2, then rung 3's offset
    assert rung_offsets([Row(1, 2.0, 0.3, False), Row(2, 2.0, 0.4, True)]) == {2.0: 0.0}
    assert truncated_reward(0.3, 2.0, {}) == 0.3  # no estimate: the raw rung value


def test_ties_at_the_full_budget_do_not_tie_stopped_children() -> None:
    """The round-3 collapse: every full-budget value is the same number (copies of none).
    The offset rule still gives distinct children distinct rewards, in their rung order,
    below the promoted children's estimates."""
    tied = 0.6119213
    rows = [Row(t, 2.0, 0.70 + 0.01 * t, True) for t in range(3)]
    rows += [Row(t, 16.0, tied, None) for t in range(3)]
    stopped = {10 + k: 0.40 + 0.03 * k for k in range(6)}
    rows += [Row(t, 2.0, v, False) for t, v in stopped.items()]
    results = {t: Res(t, v, {"truncated": 1.0, "truncated_at_rung": 2.0})
               for t, v in stopped.items()}
    out = batch_rewards(sorted(stopped), results, rows, 0.0)
    values = [out[t] for t in sorted(stopped)]
    assert len(set(values)) == len(values)  # no two equal
    assert values == sorted(values)  # the rung order is kept
    off = rung_offsets(rows)[2.0]
    assert all(v < 0.70 + off for v in values)  # below every promoted child's estimate


@pytest.mark.parametrize("seed", range(5))
def test_offset_reward_is_strictly_increasing_in_the_rung_value(seed: int) -> None:
    rng = random.Random(seed)
    rows = _curves(30, (1.0, 3.0), 9.0, seed)
    off = rung_offsets(rows)
    for rung in (1.0, 3.0):
        vs = sorted({rng.uniform(-1, 2) for _ in range(50)})
        out = [truncated_reward(v, rung, off) for v in vs]
        assert all(b > a for a, b in zip(out, out[1:], strict=False))


def test_batch_rewards_cover_failures_full_children_and_cache_hits() -> None:
    rows = [Row(1, 2.0, 0.5, True), Row(1, 8.0, 0.9, None), Row(2, 2.0, 0.3, False)]
    results = {
        1: Res(1, 0.9),  # a full-budget child: its reward as stored
        2: Res(2, 0.3, {"truncated": 1.0, "truncated_at_rung": 2.0}),  # stopped: 0.3 + 0.4
        3: Res(3, 0.0, {"bad_pattern": 1.0}),  # a bad pattern: the failure reward
        4: Res(4, None),  # no reward at all
        # a cache hit of trial 2: no rung rows of its own, its reward is trial 2's rung value
        5: Res(5, 0.3, {"truncated": 1.0, "truncated_at_rung": 2.0}),
    }
    out = batch_rewards([1, 2, 3, 4, 5, 6], results, rows, -1.0)
    assert out == {1: 0.9, 2: pytest.approx(0.7), 3: -1.0, 4: -1.0, 5: pytest.approx(0.7),
                   6: -1.0}
