"""Learned (AutoDropout) dropout patterns on ``(N, C, H, W)`` feature maps.

Papers and reference code this follows:

- H. Pham, Q. V. Le, "AutoDropout: Learning Dropout Patterns to Regularize Deep Networks",
  AAAI 2021, https://arxiv.org/abs/2101.01761 (tiled rectangles, rotation, shear, share_c).
- G. Ghiasi, T.-Y. Lin, Q. V. Le, "DropBlock: A regularization method for convolutional
  networks", NeurIPS 2018, https://arxiv.org/abs/1810.12890, and its reference code, whose
  rescaling by the *realised* kept fraction (``numel / kept``) is used here.
- timm ``timm/layers/drop.py`` for the function-plus-thin-module layout.

How a mask is made (**ours**; the paper gives no code):

1. Once per ``(pattern, H, W, device)`` a small *canvas* is rendered and cached. Every
   integer pixel ``(i, j)`` is mapped, at its centre ``(x, y) = (j + .5, i + .5)`` (rows grow
   downwards), to pattern-frame coordinates ``q = Hy^-1 Hx^-1 R^-1 (x, y)``, where ``R``
   rotates by ``rotate`` degrees counter-clockwise *as displayed*, ``Hx`` shears x by
   ``shear_x * y`` and ``Hy`` shears y by ``shear_y * x`` (all det 1, so areas are kept).
   The pixel is dropped when ``q mod period < size`` on both axes; with a finite
   ``repeat`` the pattern-frame square index must also lie in ``[0, repeat)``.
2. Each example (and channel, unless ``share_c``) takes the window
   ``canvas[oy:oy+H, ox:ox+W]`` at a uniformly random integer offset ``(oy, ox)``:
   the only randomness is where the pattern is placed.

   - ``repeat = None`` without transforms: offsets range over one period, so the phase is
     exactly uniform and every position is dropped with probability ``size**2/period**2``.
   - ``repeat = None`` with rotation/shear: offsets range over ``L >= max(2H, 2W, 128)``
     pixels (a multiple of the period), which averages the transformed tiling over a large
     region, and the tiling is anchored at the one of 16 sub-pixel positions whose expected
     fraction is closest to ``size**2 / period**2``; the per-position probability then
     matches the area fraction up to the discretisation of a rotated lattice on pixels.
   - finite ``repeat``: the ``repeat x repeat`` group is drawn on an ``(H, W)`` torus and
     tiled 2x2, so every offset is a cyclic shift and every position is equally likely to
     be dropped. A group wider than the map wraps onto itself and overlaps, so it then
     drops less than :meth:`ConvPattern.drop_fraction` predicts. A rotated or sheared
     group is anchored at the one of 16 sub-pixel positions whose pixel count is closest
     to its area, so small rotated squares are not lost between pixel centres.
3. The kept units are multiplied by ``numel / kept`` over the whole batch (DropBlock's
   reference code). ``kept`` comes from a summed-area table of the canvas, without touching
   the ``N*C*H*W`` elements. A mask that keeps nothing yields zeros (scale 0), never NaN.

Cost: one gather of the ``(H, W)`` windows plus one multiply. Autograd saves only the
offsets and the small canvas and regenerates the mask in backward.

``torch.compile`` (**ours**): while tracing, the op is the two custom ops
``torch.ops.adsearch.conv_draw`` (the offsets and the scale) and ``conv_apply`` (the gather
and the multiply, its own backward), which run this same code; see
:func:`adsearch.ops._common.compiling`.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import torch
from torch import nn

from adsearch.errors import PatternError
from adsearch.ops._common import (
    LIBRARY,
    check_rank,
    compiling,
    keep_scale,
    pattern_key,
    randint,
)
from adsearch.patterns.conv import ConvPattern

__all__ = ["PatternDropout2d", "conv_canvas", "pattern_dropout_2d", "pattern_geometry"]

#: Offset range (pixels) of a rotated or sheared whole-map tiling: large enough that the
#: transformed lattice averages out on integer pixels, small enough that the canvas stays
#: in cache (**ours**; see the module docstring).
_MIN_RANGE = 128
_EPS = 1e-9
#: Sub-pixel anchors tried for a rotated/sheared pattern (**ours**): the one whose expected
#: dropped fraction is closest to the analytic one wins, so small rotated squares keep
#: their area.
_ANCHORS = [(ay / 4, ax / 4) for ay in range(4) for ax in range(4)]


class Canvas(NamedTuple):
    """A rendered pattern: ``kept`` (Hc, Wc) bool, ``counts`` (Ly, Lx) int32 kept units of
    the (H, W) window at each offset; offsets are drawn in ``[0, Ly) x [0, Lx)``."""

    kept: torch.Tensor
    counts: torch.Tensor
    height: int
    width: int


def _pattern_coords(pattern: ConvPattern, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Map pixel-centre coordinates (float64, any shape) to the pattern frame."""
    theta = math.radians(pattern.rotate)
    c, s = math.cos(theta), math.sin(theta)
    rx = c * x - s * y  # R^-1 of a counter-clockwise (as displayed, y down) rotation
    ry = s * x + c * y
    qx = rx - pattern.shear_x * ry  # Hx^-1
    qy = ry - pattern.shear_y * qx  # Hy^-1
    return qx, qy


def _dropped(pattern: ConvPattern, qx: torch.Tensor, qy: torch.Tensor) -> torch.Tensor:
    """Squares are half-open, ``[0, size)``; ``_EPS`` puts points on an edge that rounding
    may push either way (e.g. ``cos 45 - sin 45``) deterministically on its closed side."""
    p, size = pattern.period, pattern.size
    qx, qy = qx + _EPS, qy + _EPS
    out = (torch.remainder(qx, p) < size) & (torch.remainder(qy, p) < size)
    if pattern.repeat is not None:
        span = pattern.repeat * p
        out &= (qx >= 0) & (qx < span) & (qy >= 0) & (qy < span)
    return out


def _window_counts(kept: torch.Tensor, height: int, width: int, ly: int, lx: int) -> torch.Tensor:
    """Kept units of every (height, width) window of ``kept`` at offsets [0, ly) x [0, lx)."""
    sat = torch.zeros(kept.shape[0] + 1, kept.shape[1] + 1, dtype=torch.int64)
    sat[1:, 1:] = kept.to(torch.int64).cumsum(0).cumsum(1)
    h, w = height, width
    return sat[h : h + ly, w : w + lx] - sat[:ly, w : w + lx] - sat[h : h + ly, :lx] + sat[:ly, :lx]


def pattern_geometry(
    pattern: ConvPattern, height: int, width: int, anchor: tuple[float, float] = (0.0, 0.0)
) -> torch.Tensor:
    """``(height, width)`` bool, True where ``pattern`` drops pixel ``(i, j)`` when the
    pattern frame's origin sits at sub-pixel position ``anchor = (ay, ax)`` (rows, cols).

    This is the geometry alone, before the random placement. A finite group is not
    wrapped here: pixels outside ``[0, height) x [0, width)`` are simply not drawn.
    """
    i = torch.arange(height, dtype=torch.float64)[:, None] + 0.5 - anchor[0]
    j = torch.arange(width, dtype=torch.float64)[None, :] + 0.5 - anchor[1]
    qx, qy = _pattern_coords(pattern, j, i)
    return _dropped(pattern, qx, qy)


def _full_tiling(pattern: ConvPattern, height: int, width: int) -> tuple[torch.Tensor, int, int]:
    """Dropped canvas of a whole-map tiling and its offset ranges (Ly, Lx)."""
    p = pattern.period
    if pattern.rotate == 0 and pattern.shear_x == 0.0 and pattern.shear_y == 0.0:
        anchors, ly = [(0.0, 0.0)], p
    else:
        anchors, ly = _ANCHORS, p * math.ceil(max(2 * height, 2 * width, _MIN_RANGE) / p)
    target = pattern.drop_fraction()
    best, best_err = None, math.inf
    for anchor in anchors:
        dropped = pattern_geometry(pattern, height + ly - 1, width + ly - 1, anchor)
        if len(anchors) == 1:
            return dropped, ly, ly
        counts = _window_counts(~dropped, height, width, ly, ly)
        err = abs(1.0 - counts.double().mean().item() / (height * width) - target)
        if err < best_err:
            best, best_err = dropped, err
    assert best is not None
    return best, ly, ly


def _finite_group(pattern: ConvPattern, height: int, width: int) -> tuple[torch.Tensor, int, int]:
    """Dropped canvas of a ``repeat x repeat`` group on an (H, W) torus, tiled 2x2."""
    assert pattern.repeat is not None
    extent = float(pattern.repeat * pattern.period)
    theta = math.radians(pattern.rotate)
    c, s = math.cos(theta), math.sin(theta)
    sx, sy = pattern.shear_x, pattern.shear_y
    # forward map A = R Hx Hy applied to the group's corners gives its pixel bounding box
    corners = []
    for qx, qy in ((0.0, 0.0), (extent, 0.0), (0.0, extent), (extent, extent)):
        hy = qy + sy * qx
        hx = qx + sx * hy
        corners.append((c * hx + s * hy, -s * hx + c * hy))
    x0 = math.floor(min(px for px, _ in corners)) - 1
    x1 = math.ceil(max(px for px, _ in corners)) + 1
    y0 = math.floor(min(py for _, py in corners)) - 1
    y1 = math.ceil(max(py for _, py in corners)) + 1
    ii = torch.arange(y0, y1 + 1, dtype=torch.int64)[:, None]
    jj = torch.arange(x0, x1 + 1, dtype=torch.int64)[None, :]
    flat_all = torch.remainder(ii, height) * width + torch.remainder(jj, width)
    area = (pattern.repeat * pattern.size) ** 2
    plain = pattern.rotate == 0 and pattern.shear_x == 0.0 and pattern.shear_y == 0.0
    best: torch.Tensor | None = None
    for ay, ax in [(0.0, 0.0)] if plain else _ANCHORS:
        px, py = _pattern_coords(pattern, jj.double() + 0.5 - ax, ii.double() + 0.5 - ay)
        hit = _dropped(pattern, px, py)
        torus = torch.zeros(height * width, dtype=torch.bool)
        torus[flat_all.expand_as(hit)[hit]] = True
        if best is None or abs(int(torus.sum()) - area) < abs(int(best.sum()) - area):
            best = torus
    assert best is not None
    canvas = best.view(height, width).repeat(2, 2)[: 2 * height - 1, : 2 * width - 1]
    return canvas, height, width


@functools.lru_cache(maxsize=64)  # a few sites x map sizes per model; <= ~2 MB each
def _cached_canvas(pattern: ConvPattern, height: int, width: int, device: str) -> Canvas:
    if pattern.repeat is None:
        dropped, ly, lx = _full_tiling(pattern, height, width)
    else:
        dropped, ly, lx = _finite_group(pattern, height, width)
    kept = ~dropped
    counts = _window_counts(kept, height, width, ly, lx)
    dev = torch.device(device)
    return Canvas(kept.to(dev), counts.to(torch.int32).contiguous().to(dev), height, width)


def conv_canvas(pattern: ConvPattern, height: int, width: int, device: Any = "cpu") -> Canvas:
    """The cached :class:`Canvas` of ``pattern`` for an ``(height, width)`` map on ``device``."""
    if not isinstance(pattern, ConvPattern):
        raise PatternError(
            f"conv_canvas: expected a ConvPattern, got {type(pattern).__name__}"
        )
    if height < 1 or width < 1:
        raise PatternError(f"conv_canvas: the map must be at least 1x1, got {height}x{width}")
    return _cached_canvas(pattern, int(height), int(width), str(torch.device(device)))


def _windows(vals: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Gather the (H, W) windows of ``vals`` at offsets (oy, ox) into a mask of ``shape``.

    The offsets are indexed in the ``(N, C')`` layout of the output, so the gather itself
    returns a fresh ``shape`` tensor, not a view of one: the op's output can then be
    modified in place (``ReLU(inplace=True)``, ``out += identity``), which autograd forbids
    on a view returned by a custom Function.
    """
    h, w = shape[-2], shape[-1]
    lead = shape[:-2]
    return vals.unfold(0, h, 1).unfold(1, w, 1)[oy.view(lead), ox.view(lead)]


def _mask_mul(mask: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``t * mask``, reusing the freshly gathered ``mask`` as the output when it can.

    A new ``N*C*H*W`` buffer costs page faults on the CPU, so the per-channel path
    multiplies in place into the gathered mask; broadcast (``share_c``) and channels_last
    inputs go through ``t * mask``, which keeps ``t``'s memory format.
    """
    if mask.shape == t.shape and t.is_contiguous():
        return mask.mul_(t)
    return t * mask


class _WindowMul(torch.autograd.Function):
    """``x * window(kept * scale, offsets)``.

    Saves the offsets, the 0-d scale and the cached bool canvas (shared with the cache, so
    it costs no new memory), and regenerates the mask in backward.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        kept: torch.Tensor,
        scale: torch.Tensor,
        oy: torch.Tensor,
        ox: torch.Tensor,
        shape: tuple[int, ...],
    ) -> torch.Tensor:
        ctx.save_for_backward(kept, scale, oy, ox)
        ctx.shape = shape
        vals = kept.to(x.dtype) * scale.to(x.dtype)
        return _mask_mul(_windows(vals, oy, ox, shape), x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        kept, scale, oy, ox = ctx.saved_tensors
        vals = kept.to(grad.dtype) * scale.to(grad.dtype)
        return _mask_mul(_windows(vals, oy, ox, ctx.shape), grad), None, None, None, None, None


def pattern_dropout_2d(
    x: torch.Tensor,
    pattern: ConvPattern,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Apply a :class:`ConvPattern` to ``x``.

    Args:
        x: ``(N, C, H, W)`` floating tensor (any device, contiguous or channels_last).
        pattern: the pattern; ``share_c`` gives one placement per example for all channels.
            ``residual`` is read by models, not here.
        training: when False, ``x`` itself is returned.
        generator: optional ``torch.Generator`` (on x's device or the CPU); a seeded one
            reproduces the mask exactly.

    Returns:
        ``(N, C, H, W)``: ``x`` times the kept mask, times ``numel / kept`` (0 if none kept).
    """
    check_rank(x, 4, "(N, C, H, W)", "pattern_dropout_2d")
    if not isinstance(pattern, ConvPattern):
        raise PatternError(
            f"pattern_dropout_2d: expected a ConvPattern, got {type(pattern).__name__}; "
            "use pattern_dropout_seq for a SeqPattern"
        )
    if not training or x.numel() == 0 or pattern.off:  # off (**ours**): identity
        return x
    if compiling():
        return _traced_2d(x, pattern, generator)
    n, c, h, w = x.shape
    canvas, oy, ox, scale = _draw(pattern, x, generator)
    shape = (n, 1 if pattern.share_c else c, h, w)
    return _WindowMul.apply(x, canvas.kept, scale, oy, ox, shape)


def _draw(
    pattern: ConvPattern, x: torch.Tensor, generator: torch.Generator | None
) -> tuple[Canvas, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The canvas of ``x``'s map, the random offsets ``oy``, ``ox`` (one per placement,
    int64) and the 0-d float64 ``numel / kept`` scale."""
    n, c, h, w = x.shape
    canvas = conv_canvas(pattern, h, w, x.device)
    placements = n if pattern.share_c else n * c
    with torch.no_grad():
        ly, lx = canvas.counts.shape
        oy = randint(ly, (placements,), x.device, generator)
        ox = randint(lx, (placements,), x.device, generator)
        kept = canvas.counts[oy, ox].sum() * (c if pattern.share_c else 1)
        scale = keep_scale(x.numel(), kept)
    return canvas, oy, ox, scale


class PatternDropout2d(nn.Module):
    """Module form of :func:`pattern_dropout_2d`; returns ``x`` itself when not training.

    Args:
        pattern: the :class:`ConvPattern` this site applies.
    """

    def __init__(self, pattern: ConvPattern) -> None:
        super().__init__()
        if not isinstance(pattern, ConvPattern):
            raise PatternError(
                f"PatternDropout2d: expected a ConvPattern, got {type(pattern).__name__}"
            )
        self.pattern = pattern

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.training:
            return x
        return pattern_dropout_2d(x, self.pattern, True, generator)

    def extra_repr(self) -> str:
        p = self.pattern
        return (
            f"size={p.size}, stride={p.stride}, repeat={p.repeat}, rotate={p.rotate}, "
            f"shear_x={p.shear_x}, shear_y={p.shear_y}, share_c={p.share_c}, residual={p.residual}"
        )


# ---------------------------------------------------------------------------- torch.compile
@functools.lru_cache(maxsize=256)
def _pattern_of(key: str) -> ConvPattern:
    return ConvPattern.from_json(key)


@torch.library.custom_op(f"{LIBRARY}::conv_draw", mutates_args=())
def _conv_draw(x: torch.Tensor, pattern: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(oy, ox, scale)`` of :func:`_draw` for ``x`` (read for its shape and device only)
    and the pattern whose JSON is ``pattern``, from torch's global generator."""
    _, oy, ox, scale = _draw(_pattern_of(pattern), x, None)
    return oy, ox, scale


@_conv_draw.register_fake
def _conv_draw_fake(
    x: torch.Tensor, pattern: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n, c = x.shape[0], x.shape[1]
    placements = n if _pattern_of(pattern).share_c else n * c
    offsets = (x.new_empty((placements,), dtype=torch.int64) for _ in range(2))
    return next(offsets), next(offsets), x.new_empty((), dtype=torch.float64)


@torch.library.custom_op(f"{LIBRARY}::conv_apply", mutates_args=())
def _conv_apply(
    t: torch.Tensor, pattern: str, oy: torch.Tensor, ox: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """``t`` times the windows at ``(oy, ox)`` of the canvas, times ``scale``: a fresh tensor
    with ``torch.empty_like(t)``'s layout (the fake kernel's)."""
    p = _pattern_of(pattern)
    n, c, h, w = t.shape
    canvas = conv_canvas(p, h, w, t.device)
    vals = canvas.kept.to(t.dtype) * scale.to(t.dtype)
    mask = _windows(vals, oy, ox, (n, 1 if p.share_c else c, h, w))
    if mask.shape == t.shape and t.is_contiguous():
        return mask.mul_(t)
    return torch.mul(t, mask, out=torch.empty_like(t))


@_conv_apply.register_fake
def _conv_apply_fake(
    t: torch.Tensor, pattern: str, oy: torch.Tensor, ox: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    return torch.empty_like(t)


def _conv_apply_setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    _, ctx.pattern, oy, ox, scale = inputs
    ctx.save_for_backward(oy, ox, scale)


def _conv_apply_backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
    oy, ox, scale = ctx.saved_tensors  # the mask is regenerated, as in eager mode
    return _conv_apply(grad, ctx.pattern, oy, ox, scale), None, None, None, None


_conv_apply.register_autograd(_conv_apply_backward, setup_context=_conv_apply_setup)


@torch.compiler.disable
def _with_generator(
    x: torch.Tensor, pattern: ConvPattern, generator: torch.Generator
) -> torch.Tensor:
    """A seeded generator is no custom-op argument: that call runs eagerly (a graph break)."""
    return pattern_dropout_2d(x, pattern, True, generator)


def _traced_2d(
    x: torch.Tensor, pattern: ConvPattern, generator: torch.Generator | None
) -> torch.Tensor:
    """:func:`pattern_dropout_2d` while ``torch.compile`` traces it: two custom ops."""
    if generator is not None:
        return _with_generator(x, pattern, generator)
    key = pattern_key(pattern)
    oy, ox, scale = _conv_draw(x.detach(), key)  # no gradient flows through a draw
    return _conv_apply(x, key, oy, ox, scale)
