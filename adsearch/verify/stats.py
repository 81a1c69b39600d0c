"""Seed statistics of ``adsearch verify``: mean ± std and paired differences with a Student-t
95% confidence interval. Pure Python (no scipy): the t quantile inverts the t CDF, written
with the regularized incomplete beta function (Lentz's continued fraction), by bisection.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from adsearch.errors import ConfigError


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz, NR 6.4)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(ln)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` > 0 degrees of freedom (bisection, 1e-12)."""
    if not 0.0 < p < 1.0 or not df > 0:
        raise ConfigError(f"t_quantile: need 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation and count of one regularizer's values over seeds."""

    mean: float
    std: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PairedDiff:
    """``a - b`` over the seeds both have: mean, std, and a two-sided t confidence interval.

    ``lo``/``hi`` are NaN when fewer than two seeds pair up (no interval from one value).
    ``seeds`` lists the paired seeds.
    """

    mean: float
    std: float
    n: int
    lo: float
    hi: float
    level: float
    seeds: tuple[int, ...]

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.n >= 2 and (self.lo > 0 or self.hi < 0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seeds"] = list(self.seeds)
        d["significant"] = self.significant
        return d


def summarize(values: Sequence[float]) -> Summary:
    """Mean ± sample std (0 for one value) of ``values``; raises on an empty list."""
    if not values:
        raise ConfigError("summarize: no values")
    vals = [float(v) for v in values]
    return Summary(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0,
                   len(vals))


def paired_diff(a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95) -> PairedDiff:
    """Per-seed differences ``a[s] - b[s]`` over the seeds in both, and their t interval:
    ``mean ± t_{(1+level)/2, n-1} * std / sqrt(n)``."""
    seeds = tuple(sorted(set(a) & set(b)))
    diffs = [float(a[s]) - float(b[s]) for s in seeds]
    if not diffs:
        nan = math.nan
        return PairedDiff(nan, nan, 0, nan, nan, level, ())
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return PairedDiff(mean, 0.0, 1, math.nan, math.nan, level, seeds)
    sd = statistics.stdev(diffs)
    half = t_quantile(0.5 + level / 2.0, len(diffs) - 1) * sd / math.sqrt(len(diffs))
    return PairedDiff(mean, sd, len(diffs), mean - half, mean + half, level, seeds)
