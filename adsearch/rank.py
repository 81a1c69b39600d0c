"""Rank correlations with ties, standard library only (no scipy, no torch).

- :func:`spearman`: Spearman's rho, the Pearson correlation of the mid-ranks (tied values
  share the mean of the ranks they span), as ``scipy.stats.spearmanr`` computes it.
- :func:`kendall_tau_b`: Kendall's tau-b, ``(C - D) / sqrt((n0 - T_x)(n0 - T_y))`` with
  ``n0 = n(n-1)/2`` pairs, ``C``/``D`` the concordant/discordant pairs and ``T_x``/``T_y``
  the pairs tied in x/y (``scipy.stats.kendalltau``'s default).
- :func:`null_sd`: the standard deviation of Spearman's rho over n independent values,
  ``1 / sqrt(n - 1)`` (exact for rho's permutation distribution without ties), the scale on
  which a rho from few values is read.

Each returns None where the coefficient is undefined: fewer than two values, or one side
constant (every value tied).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def mid_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks of ``values``; tied values share the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        mean = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = mean
        i = j + 1
    return ranks


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's correlation; None for fewer than 2 values or a constant side."""
    n = len(xs)
    if n != len(ys):
        raise ValueError(f"pearson: {n} x values but {len(ys)} y values")
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return None
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rho of paired values (ties: mid-ranks); None where undefined."""
    if len(xs) != len(ys):
        raise ValueError(f"spearman: {len(xs)} x values but {len(ys)} y values")
    return pearson(mid_ranks(xs), mid_ranks(ys))


def kendall_tau_b(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Kendall's tau-b of paired values (O(n^2): meant for tens to hundreds of pairs)."""
    n = len(xs)
    if n != len(ys):
        raise ValueError(f"kendall_tau_b: {n} x values but {len(ys)} y values")
    conc = disc = tie_x = tie_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx = (xs[i] > xs[j]) - (xs[i] < xs[j])
            dy = (ys[i] > ys[j]) - (ys[i] < ys[j])
            if dx == 0:
                tie_x += 1
            if dy == 0:
                tie_y += 1
            if dx and dy:
                if dx == dy:
                    conc += 1
                else:
                    disc += 1
    pairs = n * (n - 1) // 2
    denom = math.sqrt((pairs - tie_x) * (pairs - tie_y))
    if denom <= 0:
        return None
    return max(-1.0, min(1.0, (conc - disc) / denom))


def null_sd(n: int) -> float | None:
    """Standard deviation of Spearman's rho of ``n`` values with no relation:
    ``1 / sqrt(n - 1)``; None for n < 2."""
    return 1.0 / math.sqrt(n - 1) if n >= 2 else None
