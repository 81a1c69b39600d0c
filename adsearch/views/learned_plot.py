"""The reward as the controller saw it: per controller update (batch), every learned reward
of the batch (``results.learned_reward``, migration 0005) as dots and the batch mean, one
panel per search; batches whose rewards are all equal (no spread) are shaded, since a
controller learns nothing from them (docs: science.md, "look at what the learner saw").

The input is what ``adsearch status --json`` lists under ``updates``
(:func:`adsearch.views.status.controller_updates`), so no store is read here. matplotlib is
the ``plot`` extra, imported only when a PNG is drawn; no torch.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adsearch.errors import ConfigError


def known_updates(updates: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The updates that recorded their batch's learned rewards (those logged before issue 19
    have ``rewards`` None), with the rewards as floats."""
    out = []
    for u in updates:
        rs = u.get("rewards")
        if rs:
            out.append({**u, "rewards": [float(r) for r in rs]})
    return out


def no_spread(rewards: Sequence[float]) -> bool:
    """More than one reward, all equal: a batch whose advantages are all zero."""
    return len(rewards) > 1 and max(rewards) == min(rewards)


def _x(update: dict[str, Any], k: int) -> float:
    """Where an update sits on the x axis: the version it produced (else its 1-based index)."""
    v = update.get("version")
    return float(v) if isinstance(v, (int, float)) else float(k + 1)


def plot_learned(panels: Sequence[tuple[str, Sequence[dict[str, Any]]]],
                 output: str | Path) -> Path:
    """Draw one panel per ``(title, updates)`` pair (``updates`` as ``status --json`` lists
    them) and write the PNG to ``output`` atomically. x: the controller version the update
    produced (one per batch); y: the learned reward (the task's reward scale, e.g.
    validation accuracy as a fraction).

    Raises:
        ConfigError: matplotlib is missing, or no panel has a recorded learned reward.
    """
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("the learned-reward chart needs matplotlib: "
                          "pip install 'adsearch[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from adsearch.atomic import write_bytes_atomic

    drawn = [(title, known_updates(ups)) for title, ups in panels]
    drawn = [(title, ups) for title, ups in drawn if ups]
    if not drawn:
        raise ConfigError("no controller update recorded its batch's learned rewards yet")
    cols = min(len(drawn), 2)
    rows = math.ceil(len(drawn) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 3.9 * rows), sharey=True,
                             squeeze=False)
    for ax, (title, ups) in zip(axes.flat, drawn, strict=False):
        flat = 0
        xs = [_x(u, k) for k, u in enumerate(ups)]
        for x, u in zip(xs, ups, strict=True):
            rs = u["rewards"]
            if no_spread(rs):
                flat += 1
                ax.axvspan(x - 0.45, x + 0.45, color="#d62728", alpha=0.15, lw=0)
            ax.scatter([x] * len(rs), rs, s=14, color="#1f77b4", alpha=0.7, zorder=3)
        means = [sum(u["rewards"]) / len(u["rewards"]) for u in ups]
        ax.plot(xs, means, color="black", marker="_", markersize=14, lw=1, zorder=4,
                label="batch mean")
        ax.set_title(f"{title}: {flat} of {len(ups)} batch(es) with no spread", fontsize=9)
        ax.set_xlabel("controller update (version after the batch)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes.flat[len(drawn):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("learned reward (what the update used)")
    fig.suptitle("reward per batch as the controller saw it (dots: each child; red: no spread)",
                 fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    out = Path(output).expanduser()
    write_bytes_atomic(out, buf.getvalue())
    return out
