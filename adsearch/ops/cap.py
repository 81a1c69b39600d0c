"""The drop cap (**ours**): refuse, before it trains, a pattern that would wipe its network.

A site's pattern is refused when, on a feature map the site acts on,

- it drops the **whole map at every placement** (the op then multiplies the map by zero:
  nothing reaches the next layer), whatever the cap; or
- it drops **more than the cap** (``--max-drop``, default 0.5) of the map's units on
  average over the op's random placements.

A pattern that drops a whole map only at *some* placements is not refused for that alone:
that is what SpatialDropout does to a channel, and it is capped by its average like any other.

How the figures are computed, exactly and without sampling:

- **conv** (:func:`conv_drop`): the op places its rendered canvas at an offset drawn
  uniformly from a fixed range (:mod:`adsearch.ops.conv`); the canvas's table of kept units
  per offset (``Canvas.counts``) gives the expected dropped share and the share of offsets
  that keep nothing, for the map's real ``(H, W)``. It is the op's own mask, so rotation,
  shear, pixel rounding and a finite group that wraps on a small map are all accounted for.
  Without the map's size (a task that does not state it), a whole-map tiling is checked by
  its area fraction ``size**2 / period**2`` (what it drops on any map in expectation), and a
  finite ``repeat`` group, whose share depends on the map, is not checked.
- **seq** (:func:`seq_drop`): every step is dropped with probability ``size / period`` (the
  phase is uniform), and a dropped step loses all channels (``token``) or one of ``groups``
  groups that partition the channels, so the expected share is exactly
  :meth:`SeqPattern.drop_fraction` on any ``(T, D)``; since ``stride >= 1`` some phase keeps
  a step, so no sequence pattern wipes its map at every placement.

Off sites drop nothing. A pattern of another family (the v2 spaces) is checked by its
``drop_fraction()``, the rate it realises on any map (their ops bound it by construction).
The daemon runs this check when it draws a trial
(:mod:`adsearch.daemon.dedup`): a refused trial is a bad pattern (the failure reward, with
the reason as its error) that costs no child process.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from adsearch.patterns import ConvPattern, SeqPattern

#: The default cap: the largest share of a site's units a pattern may drop on average.
DEFAULT_MAX_DROP = 0.5

Shape = tuple[int, int]
"""A feature map's ``(height, width)`` in px (conv sites)."""


@dataclass(frozen=True)
class SiteDrop:
    """What one site's pattern drops on one of its maps.

    ``shape`` is the map's ``(H, W)`` (None: the figure holds on every map); ``mean`` the
    expected dropped share of its units (0..1); ``wipe`` the share of placements that drop
    every unit (None: unknown without the map's size).
    """

    site: int
    shape: Shape | None
    mean: float
    wipe: float | None

    def where(self) -> str:
        return f"its {self.shape[0]}x{self.shape[1]} map" if self.shape else "any map"


@functools.lru_cache(maxsize=4096)
def conv_drop(pattern: ConvPattern, height: int, width: int) -> tuple[float, float]:
    """``(mean, wipe)`` of ``pattern`` on an ``(height, width)`` map, from the op's canvas:
    the expected dropped share over the op's uniform placements and the share of placements
    that keep no unit."""
    import torch

    from adsearch.ops.conv import conv_canvas

    if pattern.off:
        return 0.0, 0.0
    counts = conv_canvas(pattern, height, width).counts.to(torch.float64)
    mean = 1.0 - float(counts.mean()) / (height * width)
    wipe = float((counts == 0).to(torch.float64).mean())
    return max(0.0, mean), wipe


def seq_drop(pattern: SeqPattern) -> float:
    """Expected dropped share of a sequence pattern on any ``(T, D)`` map (exact)."""
    return pattern.drop_fraction()


def site_drops(patterns: Sequence[Any], maps: Sequence[Sequence[Shape]] | None) -> list[SiteDrop]:
    """The figures of every site (one :class:`SiteDrop` per site and map). ``maps``: per site,
    the ``(H, W)`` maps it acts on (conv), or None when the task does not state them."""
    out: list[SiteDrop] = []
    for i, p in enumerate(patterns):
        if p.off:
            continue
        if isinstance(p, SeqPattern):
            out.append(SiteDrop(i, None, seq_drop(p), 0.0))
            continue
        if not isinstance(p, ConvPattern):  # another family (v2): its rate, on any map
            out.append(SiteDrop(i, None, float(p.drop_fraction()), None))
            continue
        shapes = list(maps[i]) if maps is not None and i < len(maps) else []
        if shapes:
            for h, w in shapes:
                mean, wipe = conv_drop(p, int(h), int(w))
                out.append(SiteDrop(i, (int(h), int(w)), mean, wipe))
        elif p.repeat is None:  # map-free: the tiling's area fraction
            out.append(SiteDrop(i, None, p.drop_fraction(), None))
    return out


def refusal(patterns: Sequence[Any], maps: Sequence[Sequence[Shape]] | None,
            max_drop: float) -> str | None:
    """Why ``patterns`` must not train (the first site that breaks the rule), or None."""
    for d in site_drops(patterns, maps):
        if d.wipe is not None and d.wipe >= 1.0:
            return (f"site {d.site} drops the whole of {d.where()} at every placement "
                    "(nothing would reach the next layer); refused before training")
        if d.mean > max_drop + 1e-12:
            return (f"site {d.site} drops {d.mean:.1%} of the units of {d.where()}, more than "
                    f"the cap of {max_drop:.0%} (--max-drop); refused before training")
    return None


def probe_site_maps(model: Any, example: Any) -> list[tuple[Shape, ...]]:
    """Per site, the distinct ``(H, W)`` of the inputs its dropout modules see when
    ``model`` (with a ``site_modules()`` method, as the built-in ConvNets have) runs on
    ``example``, largest first. Runs one forward pass in eval mode, without gradients."""
    import torch

    seen: list[set[Shape]] = []
    hooks = []
    for mods in model.site_modules():
        shapes: set[Shape] = set()
        seen.append(shapes)
        for m in mods:
            hooks.append(m.register_forward_pre_hook(
                lambda _m, args, shapes=shapes: shapes.add(tuple(args[0].shape[-2:]))))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return [tuple(sorted(s, reverse=True)) for s in seen]
