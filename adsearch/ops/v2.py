"""The ops of the v2 spaces (issue 20): :class:`ConvDropout2` for a
:class:`~adsearch.patterns.conv2.ConvPattern2` and :class:`SeqDropout2` for one sub-layer's
:class:`~adsearch.patterns.seq2.SeqSub2`.

Each is a pure function plus a thin module (the layout of :mod:`adsearch.ops.conv` and
:mod:`adsearch.ops.dropblock`). Masks are drawn under ``no_grad``; a module returns its input
itself in eval, and so does a function with ``training=False`` or rate 0.

Realised rate (**the documented tolerance**): every kind drops each unit with probability
exactly ``rate`` in expectation, at any map side: element/channel/token/group/interleave/
variational are Bernoulli(``rate``) per unit of their structure; ``"block"`` solves its seed
probability for the rate, overlaps and borders included (bisection to 1e-12, see
:func:`~adsearch.patterns.conv2.block_gamma`); ``"tile"`` places its tiling at a uniform
continuous offset over one period, so each pixel is dropped with probability
``side**2 / period**2 = rate``. One draw's realised fraction scatters around ``rate`` with
the structure's variance; tests/test_ops_v2.py checks the mean over many independent maps
within 6 standard errors (its CLT bound) at 4, 8, 16, 32 and 56 px.

Scaling: element, channel and the seq kinds keep the textbook ``1 / (1 - rate)`` (so the
baselines are exactly these kinds, see :mod:`adsearch.ops.baselines`); block and tile
rescale by the realised kept fraction of the batch, as DropBlock does.

Masks are drawn on the generator's device, so one seeded generator gives the same masks
on every device. With no generator, element and channel use ``F.dropout``/``F.dropout2d``
(the floor of ``benchmarks/bench_masks.py``).
"""

from __future__ import annotations

import functools
import json
import math

import torch
import torch.nn.functional as F
from torch import nn

from adsearch.ops._common import LIBRARY, check_rank, compiling, keep_scale, pattern_key, uniform
from adsearch.ops.dropblock import (
    _apply,
    _block_apply,
    _BlockMul,
    _dropped_mask,
    bernoulli_positions,
)
from adsearch.patterns.conv2 import ConvGeometry, ConvPattern2, resolve
from adsearch.patterns.seq2 import SeqSub2

__all__ = ["ConvDropout2", "SeqDropout2", "conv2_dropout", "conv2_dropped", "seq2_dropout"]


def _rand(shape: tuple[int, ...], x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) draws of ``shape`` on the generator's device, moved to ``x``'s."""
    return uniform(shape, x.device, generator)


def _bernoulli_keep(x: torch.Tensor, shape: tuple[int, ...], rate: float,
                    generator: torch.Generator | None) -> torch.Tensor:
    """``x`` times a broadcast keep mask of ``shape`` (kept with ``1 - rate``), over
    ``1 - rate``."""
    keep = _rand(shape, x, generator) >= rate
    return x * (keep.to(x.dtype) / (1.0 - rate))


@functools.lru_cache(maxsize=256)
def _tile_frame(matrix: tuple[tuple[float, float], tuple[float, float]], height: int,
                width: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pattern-frame coordinates (float64 ``(H, W)``) of the pixel centres."""
    i = torch.arange(height, dtype=torch.float64, device=device)[:, None] + 0.5
    j = torch.arange(width, dtype=torch.float64, device=device)[None, :] + 0.5
    (a, b), (c, d) = matrix
    return a * j + b * i, c * j + d * i


def conv2_dropped(pattern: ConvPattern2, shape: tuple[int, int, int, int], device: torch.device,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw of ``pattern``'s dropped units as a bool tensor of ``shape`` ``(N, C, H, W)``
    (or ``(N, 1, H, W)`` when the mask is shared by the channels); True = dropped."""
    n, c, h, w = shape
    geo = resolve(pattern, h, w)
    gdev = generator.device if generator is not None else device
    cs = 1 if pattern.share_c and geo.kind != "channel" else c
    if geo.kind == "element":
        return (torch.rand((n, cs, h, w), generator=generator, device=gdev) < pattern.rate).to(device)
    if geo.kind == "channel":
        return (torch.rand((n, c, 1, 1), generator=generator, device=gdev) < pattern.rate).to(
            device).expand(n, c, h, w)
    if geo.kind == "block":
        vh, vw = h - geo.side + 1, w - geo.side + 1
        seeds = bernoulli_positions(n * cs * vh * vw, geo.gamma, device, generator)
        return _dropped_mask(seeds, (n, cs, h, w), geo.side)
    qx, qy = _tile_frame(geo.matrix, h, w, str(device))
    off = torch.rand((n, cs, 2, 1, 1), generator=generator, device=gdev, dtype=torch.float64)
    off = off.to(device) * geo.period
    p, s = geo.period, geo.side
    return (torch.remainder(qx + off[:, :, 0], p) < s) & (torch.remainder(qy + off[:, :, 1], p) < s)


def conv2_dropout(x: torch.Tensor, pattern: ConvPattern2, training: bool = True,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply ``pattern`` to ``x`` of shape ``(N, C, H, W)`` (see the module docstring).

    Returns ``x`` itself when not training or at rate 0.
    """
    check_rank(x, 4, "(N, C, H, W)", "conv2_dropout")
    if not training or pattern.rate == 0.0 or x.numel() == 0:
        return x
    if compiling() and pattern.kind in ("block", "tile"):
        return _traced_conv2(x, pattern, generator)  # element and channel trace as they are
    n, c, h, w = x.shape
    # element and channel ignore the map's size (and resolve, a cached function, is then not
    # traced by torch.compile)
    geo = (ConvGeometry(pattern.kind, 1, 1.0, pattern.rate, ((1.0, 0.0), (0.0, 1.0)))
           if pattern.kind in ("element", "channel") else resolve(pattern, h, w))
    if geo.kind == "element" and not pattern.share_c:
        if generator is None:
            return F.dropout(x, pattern.rate, True)
        with torch.no_grad():
            keep = _rand((n, c, h, w), x, generator) >= pattern.rate
        return x * (keep.to(x.dtype) / (1.0 - pattern.rate))
    if geo.kind == "channel" and generator is None:
        return F.dropout2d(x, pattern.rate, True)
    if geo.kind in ("element", "channel"):  # shared over channels, or a seeded channel draw
        shape = (n, 1, h, w) if geo.kind == "element" else (n, c, 1, 1)
        with torch.no_grad():
            keep = (_rand(shape, x, generator) >= pattern.rate).to(x.dtype) / (1.0 - pattern.rate)
        return x * keep
    with torch.no_grad():
        if geo.kind == "block":
            cs = 1 if pattern.share_c else c
            vh, vw = h - geo.side + 1, w - geo.side + 1
            seeds = bernoulli_positions(n * cs * vh * vw, geo.gamma, x.device, generator)
            dropped = _dropped_mask(seeds, (n, cs, h, w), geo.side)
        else:
            dropped = conv2_dropped(pattern, (n, c, h, w), x.device, generator)
        kept = (dropped.numel() - torch.count_nonzero(dropped)) * (c // dropped.shape[1])
        scale = keep_scale(x.numel(), kept)
    if geo.kind == "block":
        return _BlockMul.apply(x, dropped, seeds, scale, geo.side)
    return _apply(x, dropped, scale)  # keeps x's memory format (channels_last too)


# ---------------------------------------------------------------------------- torch.compile
# While torch.compile traces conv2_dropout, a block or tile mask is drawn by one custom op
# that runs the eager code above (the kind, side and gamma depend on the map's size, and a
# block's seeds are a data-dependent count), and applied by DropBlock's apply op (see
# adsearch.ops._common.compiling): the very draw of eager mode. Element and channel patterns
# trace as they are; a block or tile that falls back to element on a tiny map draws its
# Bernoulli mask here with torch.rand (the same law as eager mode's F.dropout).
@functools.lru_cache(maxsize=256)
def _pattern_of(key: str) -> ConvPattern2:
    return ConvPattern2.from_dict(json.loads(key))


def _draw_channels(pattern: ConvPattern2, c: int) -> int:
    """Channels of the compiled op's mask: one per channel, or one shared (``share_c``)."""
    return c if pattern.kind == "channel" or not pattern.share_c else 1


@torch.library.custom_op(f"{LIBRARY}::conv2_draw", mutates_args=())
def _conv2_draw(x: torch.Tensor, pattern: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dropped, scale)`` for ``x`` (read for its shape and device): the bool
    ``(N, C or 1, H, W)`` mask and the 0-d float64 factor of the kept units (``1 / (1 -
    rate)`` for element and channel, the realised ``numel / kept`` for block and tile)."""
    p = _pattern_of(pattern)
    n, c, h, w = x.shape
    geo = resolve(p, h, w)
    cs = _draw_channels(p, c)
    with torch.no_grad():
        if geo.kind == "element":
            dropped = uniform((n, cs, h, w), x.device, None) < p.rate
        elif geo.kind == "channel":
            dropped = (uniform((n, c, 1, 1), x.device, None) < p.rate).expand(n, c, h, w)
        else:
            dropped = conv2_dropped(p, (n, c, h, w), x.device)
        dropped = dropped.contiguous()
        if geo.kind in ("element", "channel"):
            scale = torch.full((), 1.0 / (1.0 - p.rate), dtype=torch.float64, device=x.device)
        else:
            kept = (dropped.numel() - torch.count_nonzero(dropped)) * (c // cs)
            scale = keep_scale(x.numel(), kept)
    return dropped, scale


@_conv2_draw.register_fake
def _conv2_draw_fake(x: torch.Tensor, pattern: str) -> tuple[torch.Tensor, torch.Tensor]:
    n, c, h, w = x.shape
    cs = _draw_channels(_pattern_of(pattern), c)
    return x.new_empty((n, cs, h, w), dtype=torch.bool), x.new_empty((), dtype=torch.float64)


@torch.compiler.disable
def _with_generator(
    x: torch.Tensor, pattern: ConvPattern2, generator: torch.Generator
) -> torch.Tensor:
    """A seeded generator is no custom-op argument: that call runs eagerly (a graph break)."""
    return conv2_dropout(x, pattern, True, generator)


def _traced_conv2(
    x: torch.Tensor, pattern: ConvPattern2, generator: torch.Generator | None
) -> torch.Tensor:
    """:func:`conv2_dropout` while ``torch.compile`` traces it: two custom ops."""
    if generator is not None:
        return _with_generator(x, pattern, generator)
    dropped, scale = _conv2_draw(x.detach(), pattern_key(pattern))
    return _block_apply(x, dropped, scale)


class ConvDropout2(nn.Module):
    """Module form of :func:`conv2_dropout`; returns ``x`` itself in eval."""

    def __init__(self, pattern: ConvPattern2) -> None:
        super().__init__()
        self.pattern = pattern

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.training:
            return x
        return conv2_dropout(x, self.pattern, True, generator)

    def extra_repr(self) -> str:
        return self.pattern.to_json()


def _seq_keep_shape(sub: SeqSub2, n: int, t: int, d: int) -> tuple[int, ...]:
    if sub.kind == "element":
        return (n, t, d)
    if sub.kind == "token":
        return (n, t, 1)
    if sub.kind == "variational":
        return (n, 1, d)
    return (n, t, sub.groups)


def seq2_keep(sub: SeqSub2, shape: tuple[int, int, int], device: torch.device,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw of ``sub``'s kept units, a bool tensor broadcastable to ``(N, T, D)``."""
    n, t, d = shape
    keep = uniform(_seq_keep_shape(sub, n, t, d), device, generator) >= sub.rate
    if sub.kind == "group":
        size = math.ceil(d / sub.groups)
        keep = keep.repeat_interleave(size, dim=2)[..., :d]
    elif sub.kind == "interleave":
        keep = keep[..., torch.arange(d, device=device) % sub.groups]
    return keep


def seq2_dropout(x: torch.Tensor, sub: SeqSub2, training: bool = True,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply one sub-layer's setting to ``x`` of shape ``(N, T, D)``; textbook scaling."""
    check_rank(x, 3, "(N, T, D)", "seq2_dropout")
    if not training or sub.rate == 0.0 or x.numel() == 0:
        return x
    if sub.kind == "element" and generator is None:
        return F.dropout(x, sub.rate, True)
    with torch.no_grad():
        n, t, d = x.shape
        keep = seq2_keep(sub, (n, t, d), x.device, generator).to(x.dtype) / (1.0 - sub.rate)
    return x * keep


class SeqDropout2(nn.Module):
    """Module form of :func:`seq2_dropout`; returns ``x`` itself in eval."""

    def __init__(self, sub: SeqSub2) -> None:
        super().__init__()
        self.sub = sub

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.training:
            return x
        return seq2_dropout(x, self.sub, True, generator)

    def extra_repr(self) -> str:
        return f"rate={self.sub.rate}, kind={self.sub.kind}, groups={self.sub.groups}"
