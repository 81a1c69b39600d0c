"""Draw dropout masks for people without torch (``adsearch pattern show|sample``).

``pattern`` commands never import torch (docs/cli.md): torch takes seconds to import, and a
look at a pattern file should not. This module draws the masks with numpy, from the same
geometry as the ops:

- v1 conv patterns (:class:`~adsearch.patterns.ConvPattern`): the canvas of
  :mod:`adsearch.ops.conv`, ported line by line in float64 (tests/test_mask_draw.py checks
  that both canvases are equal, pixel for pixel, over a sample of the space), and a window
  of it at a uniformly random integer offset per channel (one for all with ``share_c``);
- v1 seq patterns: the spans and channel groups of :mod:`adsearch.ops.seq`;
- v2 patterns: the geometry :func:`adsearch.patterns.conv2.resolve` gives (the ops use it
  too) and the draws of :mod:`adsearch.ops.v2` (element, channel, block, tile; per
  sub-layer for seq).

The random placements come from numpy's generator, not torch's: a seed gives the same
drawing every time, but not the very draw the op makes with a torch generator of that
seed (the law is the same; tests/test_mask_draw.py compares the dropped fractions).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from adsearch.errors import PatternError
from adsearch.patterns import ConvPattern, SeqPattern
from adsearch.patterns.conv2 import ConvPattern2, resolve
from adsearch.patterns.seq2 import SeqPattern2, SeqSub2

# the constants of adsearch.ops.conv (kept equal by tests/test_mask_draw.py)
_MIN_RANGE = 128
_EPS = 1e-9
_ANCHORS = [(ay / 4, ax / 4) for ay in range(4) for ax in range(4)]


# ---------------------------------------------------------------------------- v1 conv canvas
def _pattern_coords(p: ConvPattern, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    theta = math.radians(p.rotate)
    c, s = math.cos(theta), math.sin(theta)
    rx = c * x - s * y
    ry = s * x + c * y
    qx = rx - p.shear_x * ry
    qy = ry - p.shear_y * qx
    return qx, qy


def _dropped(p: ConvPattern, qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
    period, size = p.period, p.size
    qx, qy = qx + _EPS, qy + _EPS
    out = (np.remainder(qx, period) < size) & (np.remainder(qy, period) < size)
    if p.repeat is not None:
        span = p.repeat * period
        out &= (qx >= 0) & (qx < span) & (qy >= 0) & (qy < span)
    return np.asarray(out)


def _geometry(p: ConvPattern, height: int, width: int, anchor: tuple[float, float]) -> np.ndarray:
    i = np.arange(height, dtype=np.float64)[:, None] + 0.5 - anchor[0]
    j = np.arange(width, dtype=np.float64)[None, :] + 0.5 - anchor[1]
    qx, qy = _pattern_coords(p, j, i)
    return _dropped(p, qx, qy)


def _window_counts(kept: np.ndarray, height: int, width: int, ly: int, lx: int) -> np.ndarray:
    sat = np.zeros((kept.shape[0] + 1, kept.shape[1] + 1), dtype=np.int64)
    sat[1:, 1:] = kept.astype(np.int64).cumsum(0).cumsum(1)
    h, w = height, width
    return np.asarray(
        sat[h : h + ly, w : w + lx] - sat[:ly, w : w + lx] - sat[h : h + ly, :lx] + sat[:ly, :lx]
    )


def _full_tiling(p: ConvPattern, height: int, width: int) -> tuple[np.ndarray, int, int]:
    period = p.period
    if p.rotate == 0 and p.shear_x == 0.0 and p.shear_y == 0.0:
        anchors, ly = [(0.0, 0.0)], period
    else:
        anchors = _ANCHORS
        ly = period * math.ceil(max(2 * height, 2 * width, _MIN_RANGE) / period)
    target = p.drop_fraction()
    best, best_err = None, math.inf
    for anchor in anchors:
        dropped = _geometry(p, height + ly - 1, width + ly - 1, anchor)
        if len(anchors) == 1:
            return dropped, ly, ly
        counts = _window_counts(~dropped, height, width, ly, ly)
        err = abs(1.0 - float(counts.astype(np.float64).mean()) / (height * width) - target)
        if err < best_err:
            best, best_err = dropped, err
    assert best is not None
    return best, ly, ly


def _finite_group(p: ConvPattern, height: int, width: int) -> tuple[np.ndarray, int, int]:
    assert p.repeat is not None
    extent = float(p.repeat * p.period)
    theta = math.radians(p.rotate)
    c, s = math.cos(theta), math.sin(theta)
    sx, sy = p.shear_x, p.shear_y
    corners = []
    for qx, qy in ((0.0, 0.0), (extent, 0.0), (0.0, extent), (extent, extent)):
        hy = qy + sy * qx
        hx = qx + sx * hy
        corners.append((c * hx + s * hy, -s * hx + c * hy))
    x0 = math.floor(min(px for px, _ in corners)) - 1
    x1 = math.ceil(max(px for px, _ in corners)) + 1
    y0 = math.floor(min(py for _, py in corners)) - 1
    y1 = math.ceil(max(py for _, py in corners)) + 1
    ii = np.arange(y0, y1 + 1, dtype=np.int64)[:, None]
    jj = np.arange(x0, x1 + 1, dtype=np.int64)[None, :]
    flat_all = np.remainder(ii, height) * width + np.remainder(jj, width)
    area = (p.repeat * p.size) ** 2
    plain = p.rotate == 0 and p.shear_x == 0.0 and p.shear_y == 0.0
    best: np.ndarray | None = None
    for ay, ax in [(0.0, 0.0)] if plain else _ANCHORS:
        px, py = _pattern_coords(p, jj.astype(np.float64) + 0.5 - ax,
                                 ii.astype(np.float64) + 0.5 - ay)
        hit = _dropped(p, px, py)
        torus = np.zeros(height * width, dtype=bool)
        torus[np.broadcast_to(flat_all, hit.shape)[hit]] = True
        if best is None or abs(int(torus.sum()) - area) < abs(int(best.sum()) - area):
            best = torus
    assert best is not None
    canvas = np.tile(best.reshape(height, width), (2, 2))[: 2 * height - 1, : 2 * width - 1]
    return canvas, height, width


@functools.lru_cache(maxsize=64)
def conv_canvas(pattern: ConvPattern, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``(kept, counts)`` of ``pattern`` on an ``(height, width)`` map: the bool canvas and
    the kept units of the window at each offset, as :func:`adsearch.ops.conv.conv_canvas`."""
    if pattern.repeat is None:
        dropped, ly, lx = _full_tiling(pattern, height, width)
    else:
        dropped, ly, lx = _finite_group(pattern, height, width)
    kept = ~dropped
    return kept, _window_counts(kept, height, width, ly, lx)


# ---------------------------------------------------------------------------- draws
def _conv_v1(p: ConvPattern, panels: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    kept, counts = conv_canvas(p, h, w)
    ly, lx = counts.shape
    n = 1 if p.share_c else panels
    oy, ox = rng.integers(0, ly, n), rng.integers(0, lx, n)
    out = np.stack([kept[y : y + h, x : x + w] for y, x in zip(oy, ox, strict=True)])
    return np.asarray(np.broadcast_to(out, (panels, h, w)).copy())


def _seq_v1(p: SeqPattern, panels: int, t: int, d: int, rng: np.random.Generator) -> np.ndarray:
    period = p.period
    phase = rng.integers(0, period, (panels, 1))
    pos = np.arange(t)[None, :] + phase
    dropped = (pos % period) < p.size  # (N, T)
    if p.mask == "token":
        return np.broadcast_to(~dropped[:, :, None], (panels, t, d)).copy()
    spans = 1 if p.share_t else (t + period - 1) // period + 1
    choice = rng.integers(0, p.groups, (panels, spans))
    span_of = np.zeros_like(pos) if p.share_t else pos // period
    g = np.take_along_axis(choice, span_of, axis=1)  # (N, T)
    ch = np.arange(d)
    if p.mask == "group":
        hit = (ch[None, None, :] // math.ceil(d / p.groups)) == g[:, :, None]
    else:  # interleave
        hit = (ch[None, None, :] % p.groups) == g[:, :, None]
    return np.asarray(~(dropped[:, :, None] & hit))


def _conv_v2(p: ConvPattern2, panels: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    geo = resolve(p, h, w)
    n = 1 if p.share_c and geo.kind != "channel" else panels
    if geo.kind == "element":
        dropped = rng.random((n, h, w)) < p.rate
    elif geo.kind == "channel":
        dropped = np.broadcast_to(rng.random((panels, 1, 1)) < p.rate, (panels, h, w))
    elif geo.kind == "block":
        vh, vw = h - geo.side + 1, w - geo.side + 1
        seeds = rng.random((n, vh, vw)) < geo.gamma
        dropped = np.zeros((n, h, w), dtype=bool)
        for dy in range(geo.side):
            for dx in range(geo.side):
                dropped[:, dy : dy + vh, dx : dx + vw] |= seeds
    else:  # tile: the pattern frame at a uniform continuous offset over one period
        (a, b), (c, e) = geo.matrix
        i = np.arange(h, dtype=np.float64)[:, None] + 0.5
        j = np.arange(w, dtype=np.float64)[None, :] + 0.5
        qx, qy = a * j + b * i, c * j + e * i
        off = rng.random((n, 2, 1, 1)) * geo.period
        s = geo.side
        dropped = ((np.remainder(qx + off[:, 0], geo.period) < s)
                   & (np.remainder(qy + off[:, 1], geo.period) < s))
    return np.asarray(~np.broadcast_to(dropped, (panels, h, w)))


def _seq_v2(sub: SeqSub2, panels: int, t: int, d: int, rng: np.random.Generator) -> np.ndarray:
    shape = {"element": (panels, t, d), "token": (panels, t, 1), "variational": (panels, 1, d)}
    keep = rng.random(shape.get(sub.kind, (panels, t, sub.groups))) >= sub.rate
    if sub.kind == "group":
        keep = np.repeat(keep, math.ceil(d / sub.groups), axis=2)[..., :d]
    elif sub.kind == "interleave":
        keep = keep[..., np.arange(d) % sub.groups]
    return np.asarray(np.broadcast_to(keep, (panels, t, d)))


def site_masks(pattern: Any, panels: int, shape: tuple[int, int], seed: int) -> np.ndarray:
    """``(panels, A, B)`` bool masks of one site, True = kept.

    Conv: ``panels`` channels of one example, ``(H, W)`` each (identical with ``share_c``).
    Seq: ``panels`` examples, ``(T, D)`` each. A v2 seq pattern draws its strongest
    sub-layer (``pattern show --json`` lists each one).
    """
    rng = np.random.default_rng(int(seed))
    a, b = int(shape[0]), int(shape[1])
    if isinstance(pattern, SeqPattern2):
        subs = [pattern.sub(s) for s in pattern.sites] or [pattern.sub("emb")]
        pattern = max(subs, key=lambda sub: sub.rate)
    if getattr(pattern, "off", False):
        return np.ones((panels, a, b), dtype=bool)
    if isinstance(pattern, ConvPattern):
        return _conv_v1(pattern, panels, a, b, rng)
    if isinstance(pattern, SeqPattern):
        return _seq_v1(pattern, panels, a, b, rng)
    if isinstance(pattern, ConvPattern2):
        return _conv_v2(pattern, panels, a, b, rng)
    if isinstance(pattern, SeqSub2):
        return _seq_v2(pattern, panels, a, b, rng)
    raise PatternError(f"cannot draw a {type(pattern).__name__}: expected a conv or seq pattern")
