"""Proof round 4 report, the figures: ``searches.png``, ``learned_reward.png`` and
``patterns.png`` (and their ``_lm`` twins), drawn with matplotlib from
:class:`proof4_searches.SearchData`.

Part of benchmarks/proof4_report.py (which says what each figure shows).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from proof4_searches import SearchData, _words, say

#: Channels of one example drawn per site in patterns.png (a 2x2 mosaic).
CHANNELS = 4


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    import io

    from adsearch.atomic import write_bytes_atomic

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _pyplot().close(fig)
    write_bytes_atomic(path, buf.getvalue())


def plot_searches(searches: Sequence[SearchData], path: Path) -> bool:
    """``searches.png``: best-so-far over run time, every search on the same axes."""
    drawn = [s for s in searches if any(p.full for p in s.points)]
    if not drawn:
        say("missing: no search has a full-length result yet: searches.png skipped")
        return False
    plt = _pyplot()
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    for i, s in enumerate(drawn):
        color = f"C{i}"
        full = [p for p in s.points if p.full]
        xs, ys, top = [0.0], [math.nan], -math.inf
        for p in full:
            top = max(top, p.reward)
            xs.append(p.minutes)
            ys.append(top)
        end = max(xs[-1], (s.elapsed_s or 0.0) / 60.0)
        xs.append(end)
        ys.append(top)
        ax.step(xs, ys, where="post", color=color, lw=2,
                label=f"{s.name} ({s.controller}, {s.space}): {len(full)} full-length, "
                      f"best {top:.4f}")
        plain = [p for p in full if p.purpose != "enqueued"]
        seeded = [p for p in full if p.purpose == "enqueued"]
        ax.scatter([p.minutes for p in plain], [p.reward for p in plain], s=12, color=color,
                   alpha=0.45)
        ax.scatter([p.minutes for p in seeded], [p.reward for p in seeded], s=110, marker="*",
                   color=color, edgecolor="black", linewidth=0.7, zorder=5)
    handles, _ = ax.get_legend_handles_labels()
    handles += [Line2D([], [], ls="", marker="*", ms=11, color="#bbbbbb", mec="black",
                       label="a seeded baseline (enqueued trial)"),
                Line2D([], [], ls="", marker="o", ms=4, color="#bbbbbb",
                       label="a drawn child (full length)")]
    ax.legend(handles=handles, fontsize=7.5, loc="best")
    ax.set_xlabel("minutes of search (daemon run time since it started)")
    ax.set_ylabel("validation reward (full-length children)")
    ax.set_title("best so far over the search, at equal wall budget", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    return True


def plot_learned(searches: Sequence[SearchData], path: Path) -> bool:
    """``learned_reward.png``: the controllers that learn (not random search)."""
    from adsearch.errors import ConfigError
    from adsearch.views.learned_plot import plot_learned as draw

    panels = [(f"{s.name} ({s.controller})", s.updates) for s in searches
              if s.controller != "random"]
    for s in searches:
        if s.controller == "random":
            say(f"learned_reward.png: {s.name} left out (random search learns from nothing)")
    try:
        draw(panels, path)
    except ConfigError as exc:
        say(f"missing: {exc}: learned_reward.png skipped")
        return False
    return True


def plot_patterns(searches: Sequence[SearchData], path: Path) -> bool:
    """``patterns.png``: one row per search; per site, :data:`CHANNELS` channels of one
    example drawn at the site's map (one seeded draw of the ops' geometry)."""
    import numpy as np

    from adsearch.views.mask_draw import site_masks

    rows = [s for s in searches if s.patterns]
    if not rows:
        say("missing: no search has a finished trial yet: patterns.png skipped")
        return False
    for s in rows:
        say(f"patterns.png: {s.name}: {s.pattern_source}")
    plt = _pyplot()
    cells: dict[str, list[tuple[int, tuple[int, int] | None]]] = {}
    for s in rows:  # one cell per (site, map): a site acting on 2 maps gets 2
        cells[s.name] = []
        for i in range(len(s.patterns)):
            known = s.maps[i] if i < len(s.maps) else []
            cells[s.name] += [(i, hw) for hw in known] if known else [(i, None)]
    cols = max(len(c) for c in cells.values())
    wide = 4.5 if all(s.seq_shape for s in rows) else 3.0  # a (T, D) mosaic is 4x wider
    tall = 3.2 if wide > 3.0 else 4.3
    fig, axes = plt.subplots(len(rows), cols, figsize=(wide * cols, tall * len(rows)),
                             squeeze=False)
    for r, s in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(cells[s.name]):
                ax.set_visible(False)
                continue
            site, side = cells[s.name][c]
            hw = side or s.seq_shape or (32, 32)
            masks = site_masks(s.patterns[site], CHANNELS, hw, seed=site)
            g = max(1, hw[0] // 16)  # grey lines between the channels of a 2x2 mosaic
            m = [masks[k].astype(float) for k in range(CHANNELS)]
            vgap = np.full((hw[0], g), 0.5)
            top, bottom = np.hstack([m[0], vgap, m[1]]), np.hstack([m[2], vgap, m[3]])
            mosaic = np.vstack([top, np.full((g, top.shape[1]), 0.5), bottom])
            ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            words = _words(site, s.patterns[site], [hw] if side else []).split(": ", 1)[1]
            drop = 1.0 - float(masks.mean())
            n_maps = len(s.maps[site]) if site < len(s.maps) else 0
            at = (f"{hw[0]}x{hw[1]} px" + (f" (1 of its {n_maps} maps)" if n_maps > 1 else "")
                  if side else f"{hw[0]} steps x {hw[1]} channels" if s.seq_shape
                  else "32x32 px (no map recorded)")
            what = (f"the units of {CHANNELS} sequences" if s.seq_shape and not side
                    else f"{CHANNELS} channels")
            ax.set_title(f"site {site} at {at}\n{drop:.0%} of {what} dropped\n"
                         f"{_wrap(words, 44)}", fontsize=7)
            if c == 0:
                ax.set_ylabel(f"{s.name}\n({s.controller})", fontsize=8)
    if all(s.seq_shape for s in rows):
        head = (f"best pattern of each search: {CHANNELS} sequences per site\n(time steps "
                "down, channels across; the site's strongest sub-layer; black: dropped)")
    else:
        head = (f"best pattern of each search: {CHANNELS} channels of one example per site, "
                "at each map the site acts on, as recorded (black: dropped)")
    fig.suptitle(head, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return True


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text

