"""DropBlock (Ghiasi et al. 2018) with its linear keep-probability schedule, made fast.

Paper: G. Ghiasi, T.-Y. Lin, Q. V. Le, "DropBlock: A regularization method for
convolutional networks", NeurIPS 2018, https://arxiv.org/abs/1810.12890. Reference code:
tensorflow/tpu ``models/official/resnet/resnet_model.py`` and torchvision's
``torchvision.ops.drop_block2d``, whose statistics this reproduces:

- seeds are Bernoulli(``gamma``) only where a whole ``block_size x block_size`` block fits,
  ``gamma = p * H * W / (block_size**2 * (H - block_size + 1) * (W - block_size + 1))``,
  with ``block_size`` clipped to ``min(H, W)``;
- every seed drops the block whose top-left corner it is (torchvision's centred block on
  the padded seed grid covers the same pixels);
- kept units are rescaled by ``numel / kept`` over the batch (0 if nothing is kept);
- the schedule (**paper**): ``keep_prob`` decreases linearly from 1 to ``1 - drop_prob``
  over training. ``set_progress(progress)`` with ``progress`` in [0, 1] sets the current drop
  probability to ``drop_prob * progress``. **ours**: a module that is never told its
  progress uses the target ``drop_prob`` (progress 1).

Why it is fast: with ``gamma`` around 0.003, torchvision draws ``N*C*H*W`` Bernoulli numbers
and max-pools with a 7x7 kernel. Here the seed positions are drawn directly as a Bernoulli
process (cumulative sums of geometric gaps, exact in distribution), the blocks are written
with one ``scatter_``, and autograd saves only the seed positions and regenerates the mask
in backward.

``torch.compile`` (**ours**): while tracing, the op is the custom ops
``torch.ops.adsearch.dropblock_draw`` (the blocks and the scale) and ``dropblock_apply``
(its own backward), which run this same code; see :func:`adsearch.ops._common.compiling`.
The number of seeds is random and a graph cannot carry it, so the compiled op keeps the
bool mask for backward (1 byte per unit), not the seeds.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from adsearch.errors import PatternError
from adsearch.ops._common import LIBRARY, check_prob, check_rank, compiling, keep_scale

__all__ = ["DropBlock2d", "bernoulli_positions", "drop_block_2d"]

_DENSE_GAMMA = 0.25  # above this, a dense Bernoulli draw is cheaper than geometric gaps


def bernoulli_positions(
    total: int, prob: float, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Sorted int64 indices in ``[0, total)``, each present independently with ``prob``."""
    gdev = generator.device if generator is not None else device
    if total <= 0 or prob <= 0.0:
        return torch.zeros(0, dtype=torch.int64, device=device)
    if prob >= _DENSE_GAMMA:
        hits = torch.rand(total, generator=generator, device=gdev) < prob
        return hits.nonzero().squeeze(1).to(device)
    mean = total * prob
    chunk = int(mean + 6.0 * math.sqrt(mean) + 16)
    parts: list[torch.Tensor] = []
    last = -1.0
    while last < total:  # more than one round happens with probability < 1e-9
        gaps = torch.empty(chunk, dtype=torch.float64, device=gdev).geometric_(prob, generator=generator)
        pos = gaps.cumsum(0) + last
        parts.append(pos)
        last = float(pos[-1])
    pos = torch.cat(parts)
    return pos[pos < total].to(torch.int64).to(device)


def _block_index(seeds: torch.Tensor, height: int, width: int, block: int) -> torch.Tensor:
    """Flat indices of every pixel of the blocks whose top-left corners are ``seeds``."""
    vh, vw = height - block + 1, width - block + 1
    m, r = seeds // (vh * vw), seeds % (vh * vw)
    base = m * (height * width) + (r // vw) * width + (r % vw)
    ar = torch.arange(block, device=seeds.device)
    offs = (ar[:, None] * width + ar[None, :]).reshape(-1)
    return (base[:, None] + offs[None, :]).reshape(-1)


def _dropped_mask(seeds: torch.Tensor, shape: tuple[int, ...], block: int) -> torch.Tensor:
    """Bool ``shape`` mask, True where a block whose top-left corner is in ``seeds`` lies."""
    dropped = torch.zeros(math.prod(shape), dtype=torch.bool, device=seeds.device)
    dropped.scatter_(0, _block_index(seeds, shape[-2], shape[-1], block), True)
    return dropped.view(shape)


def _apply(t: torch.Tensor, dropped: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``t`` with dropped units zeroed and the rest times ``scale``; keeps ``t``'s layout."""
    if t.is_contiguous():
        out = torch.where(dropped, 0.0, t)
    else:  # e.g. channels_last: keep the input's memory format
        out = t.clone(memory_format=torch.preserve_format).masked_fill_(dropped, 0.0)
    return out.mul_(scale.to(t.dtype))


class _BlockMul(torch.autograd.Function):
    """Applies the blocks; saves only the seed positions and regenerates them in backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dropped: torch.Tensor, seeds: torch.Tensor, scale: torch.Tensor, block: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(seeds, scale)
        ctx.shape, ctx.block = tuple(dropped.shape), block
        return _apply(x, dropped, scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        seeds, scale = ctx.saved_tensors
        dropped = _dropped_mask(seeds, ctx.shape, ctx.block)
        return _apply(grad, dropped, scale), None, None, None, None


def drop_block_2d(
    x: torch.Tensor,
    drop_prob: float = 0.1,
    block_size: int = 7,
    training: bool = True,
    generator: torch.Generator | None = None,
    share_c: bool = False,
) -> torch.Tensor:
    """DropBlock on ``x``.

    Args:
        x: ``(N, C, H, W)`` floating tensor.
        drop_prob: target fraction of dropped units, in [0, 1).
        block_size: block side in pixels (clipped to ``min(H, W)``); any positive int.
        training: when False (or ``drop_prob == 0``), ``x`` itself is returned.
        generator: optional seeded ``torch.Generator``.
        share_c: one mask per example for all channels (timm's ``couple_channels``);
            False (torchvision, the default) draws one per channel.

    Returns:
        ``(N, C, H, W)`` tensor, kept units scaled by ``numel / kept``.
    """
    check_rank(x, 4, "(N, C, H, W)", "drop_block_2d")
    check_prob(drop_prob, "drop_prob", "drop_block_2d")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise PatternError(f"drop_block_2d: block_size must be a positive int, got {block_size!r}")
    if not training or drop_prob == 0.0 or x.numel() == 0:
        return x
    if compiling():
        return _traced_block(x, drop_prob, block_size, generator, share_c)
    dropped, seeds, scale = _draw(x, drop_prob, block_size, share_c, generator)
    return _BlockMul.apply(x, dropped, seeds, scale, min(block_size, *x.shape[2:]))


def _draw(
    x: torch.Tensor,
    drop_prob: float,
    block_size: int,
    share_c: bool,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One draw for ``x``: the bool ``(N, C or 1, H, W)`` dropped mask, the sorted int64
    seed positions and the 0-d float64 ``numel / kept`` scale."""
    n, c, h, w = x.shape
    block = min(block_size, h, w)
    vh, vw = h - block + 1, w - block + 1
    gamma = min(1.0, drop_prob * h * w / (block * block * vh * vw))
    shape = (n, 1 if share_c else c, h, w)
    with torch.no_grad():
        seeds = bernoulli_positions(shape[0] * shape[1] * vh * vw, gamma, x.device, generator)
        dropped = _dropped_mask(seeds, shape, block)
        kept = (dropped.numel() - torch.count_nonzero(dropped)) * (c if share_c else 1)
        scale = keep_scale(x.numel(), kept)
    return dropped, seeds, scale


class DropBlock2d(nn.Module):
    """DropBlock with the linear schedule; returns ``x`` itself when not training.

    Args:
        drop_prob: target drop probability reached at the end of training, in [0, 1).
        block_size: block side in pixels (7 in the paper).
        share_c: one mask for all channels of an example (default: one per channel).
    """

    def __init__(self, drop_prob: float = 0.1, block_size: int = 7, share_c: bool = False) -> None:
        super().__init__()
        self.drop_prob = check_prob(drop_prob, "drop_prob", "DropBlock2d")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise PatternError(f"DropBlock2d: block_size must be a positive int, got {block_size!r}")
        self.block_size = block_size
        self.share_c = bool(share_c)
        # The progress is also kept as a float64 0-d tensor: torch.compile reads a tensor as a
        # graph input, so a new progress each step does not trace the model again (a float
        # attribute is a constant of the graph). Not a buffer: state_dict stays unchanged.
        self._progress_t = torch.ones((), dtype=torch.float64)
        self.progress = 1.0

    @property
    def progress(self) -> float:
        """Training progress in [0, 1] (set by :meth:`set_progress`)."""
        return self._progress

    @progress.setter
    def progress(self, value: float) -> None:
        self._progress = float(value)
        self._progress_t.fill_(self._progress)

    def set_progress(self, progress: float) -> None:
        """Training progress in [0, 1]: the current drop probability is ``drop_prob * progress``."""
        if isinstance(progress, bool) or not isinstance(progress, (int, float)) or not 0.0 <= progress <= 1.0:
            raise PatternError(f"DropBlock2d.set_progress: progress must be in [0, 1], got {progress!r}")
        self.progress = float(progress)

    @property
    def current_drop_prob(self) -> float:
        return self.drop_prob * self.progress

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.training:
            return x
        if compiling() and generator is None:
            check_rank(x, 4, "(N, C, H, W)", "DropBlock2d")
            if self.drop_prob == 0.0 or x.numel() == 0:
                return x
            return _traced_block(
                x, self.drop_prob, self.block_size, None, self.share_c, self._progress_t
            )
        return drop_block_2d(x, self.current_drop_prob, self.block_size, True, generator, self.share_c)

    def extra_repr(self) -> str:
        return (
            f"drop_prob={self.drop_prob}, block_size={self.block_size}, share_c={self.share_c}, "
            f"progress={self.progress}"
        )


# ---------------------------------------------------------------------------- torch.compile
@torch.library.custom_op(f"{LIBRARY}::dropblock_draw", mutates_args=())
def _block_draw(
    x: torch.Tensor,
    drop_prob: float,
    progress: torch.Tensor | None,
    block_size: int,
    share_c: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dropped, scale)`` of :func:`_draw` for ``x`` (read for its shape and device) at drop
    probability ``drop_prob * progress`` (a 0-d float64 tensor; None: 1), from torch's global
    generator. The seed positions stay inside: their number is random, and an output of
    data-dependent size would break the graph."""
    prob = drop_prob if progress is None else drop_prob * float(progress)
    dropped, _, scale = _draw(x, prob, block_size, share_c, None)
    return dropped, scale


@_block_draw.register_fake
def _block_draw_fake(
    x: torch.Tensor,
    drop_prob: float,
    progress: torch.Tensor | None,
    block_size: int,
    share_c: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    n, c, h, w = x.shape
    dropped = x.new_empty((n, 1 if share_c else c, h, w), dtype=torch.bool)
    return dropped, x.new_empty((), dtype=torch.float64)


@torch.library.custom_op(f"{LIBRARY}::dropblock_apply", mutates_args=())
def _block_apply(t: torch.Tensor, dropped: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``t`` with the ``dropped`` units zeroed and the rest times ``scale``, fresh."""
    return _apply(t, dropped, scale)


@_block_apply.register_fake
def _block_apply_fake(t: torch.Tensor, dropped: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(t)


def _block_apply_setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    # the bool mask is kept for backward (1 byte per unit, 1/C with share_c): the eager
    # op keeps only the seed positions, whose count a traced graph cannot carry
    ctx.save_for_backward(inputs[1], inputs[2])


def _block_apply_backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
    dropped, scale = ctx.saved_tensors
    return _block_apply(grad, dropped, scale), None, None


_block_apply.register_autograd(_block_apply_backward, setup_context=_block_apply_setup)


@torch.compiler.disable
def _with_generator(
    x: torch.Tensor, drop_prob: float, block_size: int, generator: torch.Generator, share_c: bool
) -> torch.Tensor:
    """A seeded generator is no custom-op argument: that call runs eagerly (a graph break)."""
    return drop_block_2d(x, drop_prob, block_size, True, generator, share_c)


def _traced_block(
    x: torch.Tensor,
    drop_prob: float,
    block_size: int,
    generator: torch.Generator | None,
    share_c: bool,
    progress: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`drop_block_2d` while ``torch.compile`` traces it: two custom ops. ``progress``
    (a module's schedule, a 0-d tensor) multiplies ``drop_prob`` at run time."""
    if generator is not None:
        return _with_generator(x, drop_prob, block_size, generator, share_c)
    dropped, scale = _block_draw(x.detach(), drop_prob, progress, block_size, share_c)
    return _block_apply(x, dropped, scale)
