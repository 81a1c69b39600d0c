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
on every device. Channel uses ``F.dropout2d`` with no generator.

Speed (issue 20; BENCHMARKS.md "v2 ops: speed per kind against the floor"): per-unit
element-wise (conv and seq) draws one random *byte* per unit plus a few Poisson hits, exact
in distribution (i.i.d. Bernoulli(``rate``), see :func:`_element_src`), instead of one float
per unit; on a CUDA tensor with no generator it stays ``F.dropout`` (one fused kernel there),
so it is the same law as ``nn.Dropout`` but not the same random numbers. A block's dropped
set is dilated from its seeds on a bit-packed map and unpacked to a float mask by a table.
Both apply the mask with one fused ``addcmul`` forward and backward (:class:`_KeepMul`), and
the backward writes the gradient into the mask's own memory.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

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


# ------------------------------------------------------------------ fast CPU draws (speed)
# Element-wise: one random byte per unit instead of one float (a quarter of the random bits),
# made exact by Poissonised sparse draws. A unit is dropped when its byte is below
# ``t = floor(256 * rate)`` (probability ``t / 256 <= rate``) or when it is hit by one of
# ``K ~ Poisson(n * lam)`` uniform positions drawn with replacement: each unit's hit count is
# then Poisson(``lam``) independently, so it is hit with probability ``1 - exp(-lam)``; with
# ``lam = -ln((1 - rate) / (1 - t / 256))`` every unit is dropped independently with
# probability exactly ``1 - (1 - t/256) exp(-lam) = rate`` (i.i.d. Bernoulli(rate); the hits
# are about ``1e-3 n`` at rate 0.2, none at rates that are multiples of 1/256).
_BYTE_MIN_RATE = 1.0 / 256.0  # below it the byte threshold is 0: a uniform draw is used


def _element_src(n: int, rate: float, device: torch.device,
                 generator: torch.Generator | None) -> tuple[torch.Tensor, int]:
    """``(src, t)``: a uint8 tensor of ``n`` units on ``device`` (drawn on the generator's
    device) such that ``src >= t`` keeps each unit independently with probability
    ``1 - rate`` (see the comment above)."""
    gdev = generator.device if generator is not None else device
    if rate < _BYTE_MIN_RATE:
        keep = torch.rand(n, generator=generator, device=gdev, dtype=torch.float64) >= rate
        return keep.to(torch.uint8).to(device), 1
    words = torch.empty(-(-n // 8), dtype=torch.int64, device=gdev)
    words.random_(-(2**63), None, generator=generator)  # all 64 bits uniform
    src = words.view(torch.uint8)[:n]
    t = math.floor(rate * 256.0)
    extra = 1.0 - (1.0 - rate) / (1.0 - t / 256.0)  # the hits' drop probability per unit
    if extra > 0.0:
        mean = torch.full((1,), -n * math.log1p(-extra), dtype=torch.float64, device=gdev)
        k = int(torch.poisson(mean, generator=generator).item())
        if k:
            u = torch.rand(k, generator=generator, device=gdev, dtype=torch.float64)
            src.index_fill_(0, (u * n).to(torch.int64).clamp_(max=n - 1), 0)
    return src.to(device), t


def _fill_keep(keep: torch.Tensor, src: torch.Tensor, t: int) -> torch.Tensor:
    """Write the 0/1 keep mask ``src >= t`` (``src`` in ``keep``'s logical order) into the
    floating tensor ``keep``, whatever its memory format; returns ``keep``."""
    return torch.ge(src.view(keep.shape), t, out=keep)


class _KeepMul(torch.autograd.Function):
    """``x * keep * scale`` with a floating 0/1 ``keep`` built for this call.

    One fused ``addcmul`` forward and one backward. The first backward writes the input
    gradient into ``keep``'s own memory (no new buffer, no second pass to rebuild the mask);
    a later backward (``retain_graph``) rebuilds ``keep`` with ``refill(*saved)``. Only the
    compact ``saved`` tensors (the random bytes, a block's seeds) go through
    ``save_for_backward``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, keep: torch.Tensor, scale: float,
        refill: Callable[..., torch.Tensor], *saved: torch.Tensor,
    ) -> torch.Tensor:
        ctx.keep, ctx.scale, ctx.refill = keep, scale, refill
        ctx.save_for_backward(*saved)
        out = torch.empty_like(x)  # x's memory format, whatever keep's broadcast
        return torch.addcmul(x.new_zeros(()), x, keep, value=scale, out=out)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        keep = ctx.keep
        if keep is None:  # a second backward: the first one used the buffer
            keep = ctx.refill(*ctx.saved_tensors)
        zero = grad.new_zeros(())
        if keep.shape == grad.shape and keep.dtype == grad.dtype:
            ctx.keep = None
            gx = torch.addcmul(zero, grad, keep, value=ctx.scale, out=keep)
        else:  # a mask shared over channels, or another dtype: a fresh gradient
            gx = torch.addcmul(zero, grad, keep, value=ctx.scale)
        return (gx, None, None, None) + (None,) * len(ctx.saved_tensors)


def _element_apply(x: torch.Tensor, rate: float,
                   generator: torch.Generator | None) -> torch.Tensor:
    """``x`` with each unit dropped i.i.d. with ``rate``, textbook ``1 / (1 - rate)`` scaling
    (the fast draw above; the same law as ``F.dropout``)."""
    with torch.no_grad():
        src, t = _element_src(x.numel(), rate, x.device, generator)
        keep = _fill_keep(torch.empty_like(x), src, t)
    shape, stride, dtype, device = keep.shape, keep.stride(), x.dtype, x.device

    def refill(s: torch.Tensor) -> torch.Tensor:  # holds no reference to x
        return _fill_keep(torch.empty_strided(shape, stride, dtype=dtype, device=device), s, t)

    return _KeepMul.apply(x, keep, 1.0 / (1.0 - rate), refill, src)  # type: ignore[no-any-return]


def _fast(x: torch.Tensor, generator: torch.Generator | None) -> bool:
    """Whether element-wise units use the byte draw: on the CPU, and with any seeded
    generator (so one generator gives the same masks on every device); a CUDA tensor with
    no generator keeps ``F.dropout`` (one fused kernel there)."""
    return generator is not None or x.device.type == "cpu"


def _shifts(side: int) -> list[int]:
    """Shifts whose OR-doubling grows a run of 1 unit into a run of ``side`` units."""
    out: list[int] = []
    width = 1
    while width < side:
        step = min(width, side - width)
        out.append(step)
        width += step
    return out


def _block_bits(seeds: torch.Tensor, maps: int, height: int, width: int,
                side: int) -> torch.Tensor:
    """The dropped units of the ``side`` px blocks whose top-left corners are the
    valid-position indices ``seeds`` (as ``dropblock._block_index`` numbers them), packed 8
    units a byte (unit ``u`` is bit ``u % 8`` of byte ``u // 8``; ``maps * H * W`` units).

    The seeds' bits are set, then the set is dilated by ``ceil(log2 side)`` shifted ORs per
    axis of the whole packed map (1/8 byte a unit). A flat shift never carries a block across
    a row or map edge, since seeds lie only where the whole block fits."""
    vh, vw = height - side + 1, width - side + 1
    nbytes = -(-(maps * height * width) // 8)
    bits = torch.zeros(nbytes, dtype=torch.uint8, device=seeds.device)
    if seeds.numel():
        s = seeds.to(torch.float64)  # exact below 2**50; float division is the fast one here
        row = torch.floor(s / vw)  # map * vh + i
        m = torch.floor(row / vh)
        pix = (s + (side - 1) * row + m * (height * width - vh * vw - (side - 1) * vh)).to(
            torch.int64)
        one = torch.ones((), dtype=torch.uint8, device=seeds.device)
        # seeds are distinct, so adding their bits into a byte is OR-ing them
        bits.index_put_((pix >> 3,), torch.bitwise_left_shift(one, (pix & 7).to(torch.uint8)),
                        accumulate=True)
    for step in _shifts(side) + [k * width for k in _shifts(side)]:
        q, r = divmod(step, 8)
        grown = bits.clone()
        if r == 0:
            grown[q:] |= bits[:nbytes - q]
        else:
            grown[q:] |= torch.bitwise_left_shift(bits[:nbytes - q], r)
            grown[q + 1:] |= torch.bitwise_right_shift(bits[:nbytes - q - 1], 8 - r)
        bits = grown
    return bits


@functools.lru_cache(maxsize=32)
def _keep_table(dtype: torch.dtype, device: str) -> torch.Tensor:
    """``(256, 8)`` table: row ``v`` holds the 0/1 keep values of the 8 units packed in byte
    ``v`` (1 where the bit is clear)."""
    v = torch.arange(256)
    return (1 - ((v[:, None] >> torch.arange(8)) & 1)).to(dtype=dtype, device=device)


def _block_keep(x: torch.Tensor, seeds: torch.Tensor, cs: int, side: int) -> tuple[
        torch.Tensor, int]:
    """``(keep, kept)``: the floating 0/1 keep mask of the blocks, ``(N, C, H, W)`` in ``x``'s
    memory format (``(N, 1, H, W)`` when shared), and the kept units of ``x``. ``x`` is read
    for its shape, strides, dtype and device only (a meta tensor will do)."""
    n, c, h, w = x.shape
    units = n * cs * h * w
    bits = _block_bits(seeds, n * cs, h, w, side).to(torch.int32)
    keep = torch.index_select(_keep_table(x.dtype, str(seeds.device)), 0, bits)
    keep = keep.view(-1)[:units].view(n, cs, h, w)
    if cs == c and not keep.is_contiguous(memory_format=_memory_format(x)):
        keep = torch.empty_like(x, device=keep.device).copy_(keep)
    counts = torch.bincount(bits, minlength=256)
    kept = int((counts * _keep_table(torch.int64, "cpu").sum(1).to(counts.device)).sum())
    kept -= 8 * bits.numel() - units  # the padding bits of the last byte count as kept
    return keep, kept * (c // cs)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    return (torch.channels_last if x.dim() == 4 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)


def _block_apply_fast(x: torch.Tensor, seeds: torch.Tensor, cs: int, side: int) -> torch.Tensor:
    """The block kind on the CPU: the seeds' blocks dropped, kept units times the realised
    ``numel / kept`` (0 when nothing is kept), as ``dropblock._BlockMul`` computes it."""
    with torch.no_grad():
        keep, kept = _block_keep(x, seeds, cs, side)
    scale = x.numel() / kept if kept else 0.0
    like = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta")

    def refill(s: torch.Tensor) -> torch.Tensor:  # holds no reference to x
        return _block_keep(like, s, cs, side)[0]

    return _KeepMul.apply(x, keep, scale, refill, seeds)  # type: ignore[no-any-return]


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
    if geo.kind == "element" and cs == c:  # the op's own draw (see _element_src)
        src, t = _element_src(n * c * h * w, pattern.rate, device, generator)
        return (src < t).view(n, c, h, w)
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
    if compiling() and (pattern.kind in ("block", "tile") or (
            pattern.kind == "element" and not pattern.share_c and x.device.type == "cpu")):
        return _traced_conv2(x, pattern, generator)  # the others trace as they are
    n, c, h, w = x.shape
    # element and channel ignore the map's size (and resolve, a cached function, is then not
    # traced by torch.compile)
    geo = (ConvGeometry(pattern.kind, 1, 1.0, pattern.rate, ((1.0, 0.0), (0.0, 1.0)))
           if pattern.kind in ("element", "channel") else resolve(pattern, h, w))
    if geo.kind == "element" and not pattern.share_c:
        if not _fast(x, generator):
            return F.dropout(x, pattern.rate, True)
        return _element_apply(x, pattern.rate, generator)
    if geo.kind == "channel" and generator is None:
        return F.dropout2d(x, pattern.rate, True)
    if geo.kind in ("element", "channel"):  # shared over channels, or a seeded channel draw
        shape = (n, 1, h, w) if geo.kind == "element" else (n, c, 1, 1)
        with torch.no_grad():
            keep = (_rand(shape, x, generator) >= pattern.rate).to(x.dtype) / (1.0 - pattern.rate)
        return x * keep
    if geo.kind == "block" and x.device.type == "cpu":
        cs = 1 if pattern.share_c else c
        vh, vw = h - geo.side + 1, w - geo.side + 1
        seeds = bernoulli_positions(n * cs * vh * vw, geo.gamma, x.device, generator)
        return _block_apply_fast(x, seeds, cs, geo.side)
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
        if geo.kind == "element" and cs == c and x.device.type == "cpu":  # eager's own draw
            src, t = _element_src(n * c * h * w, p.rate, x.device, None)
            dropped = (src < t).view(n, c, h, w)
        elif geo.kind == "element":
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


@torch.library.custom_op(f"{LIBRARY}::element_draw", mutates_args=())
def _element_draw(x: torch.Tensor, rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dropped, scale)`` of :func:`_element_apply`'s draw for ``x`` (read for its shape
    and device) from torch's global generator: the bool mask in ``x``'s shape and the 0-d
    float64 ``1 / (1 - rate)``."""
    with torch.no_grad():
        src, t = _element_src(x.numel(), rate, x.device, None)
        dropped = (src < t).view(x.shape)
    return dropped, torch.full((), 1.0 / (1.0 - rate), dtype=torch.float64, device=x.device)


@_element_draw.register_fake
def _element_draw_fake(x: torch.Tensor, rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    return x.new_empty(x.shape, dtype=torch.bool), x.new_empty((), dtype=torch.float64)


@torch.compiler.disable
def _element_with_generator(x: torch.Tensor, rate: float,
                            generator: torch.Generator) -> torch.Tensor:
    """A seeded generator is no custom-op argument: that call runs eagerly (a graph break)."""
    return _element_apply(x, rate, generator)


def _traced_element(x: torch.Tensor, rate: float,
                    generator: torch.Generator | None) -> torch.Tensor:
    """:func:`_element_apply` while ``torch.compile`` traces it: two custom ops, the very
    draw of eager mode (the number of Poisson hits is random, so the graph holds the mask)."""
    if generator is not None:
        return _element_with_generator(x, rate, generator)
    dropped, scale = _element_draw(x.detach(), rate)
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
    if sub.kind == "element":  # the op's own draw (see _element_src)
        src, thr = _element_src(n * t * d, sub.rate, device, generator)
        return (src >= thr).view(n, t, d)
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
    if sub.kind == "element":
        if not _fast(x, generator):
            return F.dropout(x, sub.rate, True)
        if compiling():
            return _traced_element(x, sub.rate, generator)
        return _element_apply(x, sub.rate, generator)
    n, t, d = x.shape
    g = sub.groups
    if sub.kind in ("group", "interleave") and d % g == 0:
        # the same draw as seq2_keep, broadcast over a view instead of gathered to (N, T, D)
        with torch.no_grad():
            keep = (uniform((n, t, g), x.device, generator) >= sub.rate).to(x.dtype)
            keep = keep / (1.0 - sub.rate)
        if sub.kind == "group":
            return (x.reshape(n, t, g, d // g) * keep.view(n, t, g, 1)).reshape(n, t, d)
        return (x.reshape(n, t, d // g, g) * keep.view(n, t, 1, g)).reshape(n, t, d)
    with torch.no_grad():
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
