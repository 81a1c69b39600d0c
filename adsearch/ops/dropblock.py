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
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from adsearch.errors import PatternError
from adsearch.ops._common import check_prob, check_rank, keep_scale

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
    return _BlockMul.apply(x, dropped, seeds, scale, block)


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
        self.progress = 1.0

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
        return drop_block_2d(x, self.current_drop_prob, self.block_size, True, generator, self.share_c)

    def extra_repr(self) -> str:
        return (
            f"drop_prob={self.drop_prob}, block_size={self.block_size}, share_c={self.share_c}, "
            f"progress={self.progress}"
        )
