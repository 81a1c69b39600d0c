"""Learned (AutoDropout) dropout patterns on ``(N, T, D)`` sequence hidden states.

Papers: H. Pham, Q. V. Le, "AutoDropout: Learning Dropout Patterns to Regularize Deep
Networks", AAAI 2021, https://arxiv.org/abs/2101.01761 (patterns along time and channels of
Transformer hidden states); Y. Gal, Z. Ghahramani, "A Theoretically Grounded Application of
Dropout in Recurrent Neural Networks", NeurIPS 2016 (masks locked over time, ``share_t``).

How a mask is made (**ours**; field semantics are in :mod:`adsearch.patterns.seq`):

- Time: spans of ``size`` steps every ``period = size + stride`` steps, at a uniformly random
  phase ``phi`` in ``[0, period)`` per example; step ``t`` is in span
  ``s = (t + phi) // period`` and is dropped when ``(t + phi) % period < size``, so every
  step is dropped with probability exactly ``size / period``.
- Channels inside a dropped step: ``"token"`` drops all ``D``; ``"group"`` drops channels
  ``[g * ceil(D/groups), (g + 1) * ceil(D/groups))``; ``"interleave"`` drops channels
  ``d`` with ``d % groups == g``. ``g`` is uniform in ``[0, groups)``, one per example
  (``share_t``) or one per span. When ``groups`` does not divide ``D`` the last group is
  short, so the dropped fraction is slightly below :meth:`SeqPattern.drop_fraction`.
- ``sites`` is read by models to choose sub-layers; this op ignores it.
- Rescaling by ``numel / kept`` over the whole batch, as for the 2-D patterns; keeping
  nothing gives zeros.

Each ``(n, t)`` row gets a code ``0`` (kept) or ``1 + g``; the mask is a row lookup in a
``(groups + 1, D)`` table, so a call costs one gather and one multiply, and autograd saves
only the ``(N, T)`` codes.

``torch.compile`` (**ours**): while tracing, the op is the custom ops
``torch.ops.adsearch.seq_draw`` (table and codes) and ``seq_apply`` (the lookup and the
multiply, its own backward), which run this same code; see
:func:`adsearch.ops._common.compiling`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
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
from adsearch.patterns.seq import SeqPattern

__all__ = ["PatternDropoutSeq", "pattern_dropout_seq", "seq_codes", "seq_table"]


def seq_table(pattern: SeqPattern, dim: int, device: Any = "cpu") -> torch.Tensor:
    """Kept-channel table, ``(1 + groups, D)`` bool (``(2, 1)`` for ``"token"``).

    Row 0 keeps everything; row ``1 + g`` is a dropped step whose channel choice is ``g``.
    """
    if pattern.mask == "token":
        return torch.tensor([[True], [False]], device=device)
    d = torch.arange(dim, device=device)
    g = torch.arange(pattern.groups, device=device)[:, None]
    if pattern.mask == "group":
        width = math.ceil(dim / pattern.groups)
        dropped = (d[None, :] // width) == g
    else:  # interleave
        dropped = (d[None, :] % pattern.groups) == g
    return torch.cat([torch.ones(1, dim, dtype=torch.bool, device=device), ~dropped], dim=0)


def seq_codes(
    pattern: SeqPattern,
    batch: int,
    length: int,
    device: Any = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random row codes ``(N, T)`` int64: 0 for a kept step, ``1 + g`` for a dropped one."""
    device = torch.device(device)
    period = pattern.period
    phase = randint(period, (batch, 1), device, generator)
    pos = torch.arange(length, device=device)[None, :] + phase
    dropped = (pos % period) < pattern.size
    if pattern.mask == "token":
        return dropped.to(torch.int64)
    spans = 1 if pattern.share_t else (length + period - 1) // period + 1
    choice = randint(pattern.groups, (batch, spans), device, generator)
    span_of = torch.zeros_like(pos) if pattern.share_t else pos // period
    return torch.where(dropped, torch.gather(choice, 1, span_of) + 1, 0)


class _RowMul(torch.autograd.Function):
    """``x * vals[codes]`` (a row lookup); saves only the codes and the small table."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, vals: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(vals, codes)
        return _row_mul(x, vals, codes)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        vals, codes = ctx.saved_tensors
        return _row_mul(grad, vals, codes), None, None


def _row_mul(t: torch.Tensor, vals: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    if vals.shape[1] == 1:  # token: one value per (n, t), broadcast over D
        return t * vals[:, 0][codes].unsqueeze(-1)
    mask = F.embedding(codes, vals)
    if t.is_contiguous():
        return mask.mul_(t)  # reuse the fresh gather as the output (no second allocation)
    return t * mask


def pattern_dropout_seq(
    x: torch.Tensor,
    pattern: SeqPattern,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Apply a :class:`SeqPattern` to ``x``.

    Args:
        x: ``(N, T, D)`` floating tensor (batch first), any device.
        pattern: the pattern; its ``sites`` are ignored here.
        training: when False, ``x`` itself is returned.
        generator: optional seeded ``torch.Generator`` (x's device or CPU).

    Returns:
        ``(N, T, D)``: ``x`` times the kept mask, times ``numel / kept`` (0 if none kept).
    """
    check_rank(x, 3, "(N, T, D)", "pattern_dropout_seq")
    if not isinstance(pattern, SeqPattern):
        raise PatternError(
            f"pattern_dropout_seq: expected a SeqPattern, got {type(pattern).__name__}; "
            "use pattern_dropout_2d for a ConvPattern"
        )
    if not training or x.numel() == 0 or pattern.off:  # off (**ours**): identity
        return x
    if compiling():
        return _traced_seq(x, pattern, generator)
    vals, codes = _draw(pattern, x, generator)
    return _RowMul.apply(x, vals, codes)


def _draw(
    pattern: SeqPattern, x: torch.Tensor, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The scaled table ``vals`` (``(1 + groups, D)``, ``(2, 1)`` for ``"token"``, x's
    dtype) and the ``(N, T)`` int64 row codes of one draw for ``x``."""
    n, t, d = x.shape
    with torch.no_grad():
        table = seq_table(pattern, d, x.device)
        codes = seq_codes(pattern, n, t, x.device, generator)
        row_kept = table.sum(1) * (d if pattern.mask == "token" else 1)
        kept = row_kept[codes].sum()
        scale = keep_scale(x.numel(), kept)
        vals = table.to(x.dtype) * scale.to(x.dtype)
    return vals, codes


class PatternDropoutSeq(nn.Module):
    """Module form of :func:`pattern_dropout_seq`; returns ``x`` itself when not training.

    Args:
        pattern: the :class:`SeqPattern` this site applies.
    """

    def __init__(self, pattern: SeqPattern) -> None:
        super().__init__()
        if not isinstance(pattern, SeqPattern):
            raise PatternError(
                f"PatternDropoutSeq: expected a SeqPattern, got {type(pattern).__name__}"
            )
        self.pattern = pattern

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.training:
            return x
        return pattern_dropout_seq(x, self.pattern, True, generator)

    def extra_repr(self) -> str:
        p = self.pattern
        return (
            f"size={p.size}, stride={p.stride}, mask={p.mask!r}, groups={p.groups}, "
            f"share_t={p.share_t}, sites={list(p.sites)}"
        )


# ---------------------------------------------------------------------------- torch.compile
@functools.lru_cache(maxsize=256)
def _pattern_of(key: str) -> SeqPattern:
    return SeqPattern.from_json(key)


@torch.library.custom_op(f"{LIBRARY}::seq_draw", mutates_args=())
def _seq_draw(x: torch.Tensor, pattern: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(vals, codes)`` of :func:`_draw` for ``x`` (read for its shape, dtype and device)
    and the pattern whose JSON is ``pattern``, from torch's global generator."""
    return _draw(_pattern_of(pattern), x, None)


@_seq_draw.register_fake
def _seq_draw_fake(x: torch.Tensor, pattern: str) -> tuple[torch.Tensor, torch.Tensor]:
    p = _pattern_of(pattern)
    rows, cols = (2, 1) if p.mask == "token" else (1 + p.groups, x.shape[2])
    codes = x.new_empty((x.shape[0], x.shape[1]), dtype=torch.int64)
    return x.new_empty((rows, cols)), codes


@torch.library.custom_op(f"{LIBRARY}::seq_apply", mutates_args=())
def _seq_apply(t: torch.Tensor, vals: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """``t * vals[codes]``: a fresh tensor with ``torch.empty_like(t)``'s layout."""
    if vals.shape[1] == 1 or not t.is_contiguous():
        mask = vals[:, 0][codes].unsqueeze(-1) if vals.shape[1] == 1 else F.embedding(codes, vals)
        return torch.mul(t, mask, out=torch.empty_like(t))
    return F.embedding(codes, vals).mul_(t)


@_seq_apply.register_fake
def _seq_apply_fake(t: torch.Tensor, vals: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(t)


def _seq_apply_setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    ctx.save_for_backward(inputs[1], inputs[2])


def _seq_apply_backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
    vals, codes = ctx.saved_tensors
    return _seq_apply(grad, vals, codes), None, None


_seq_apply.register_autograd(_seq_apply_backward, setup_context=_seq_apply_setup)


@torch.compiler.disable
def _with_generator(
    x: torch.Tensor, pattern: SeqPattern, generator: torch.Generator
) -> torch.Tensor:
    """A seeded generator is no custom-op argument: that call runs eagerly (a graph break)."""
    return pattern_dropout_seq(x, pattern, True, generator)


def _traced_seq(
    x: torch.Tensor, pattern: SeqPattern, generator: torch.Generator | None
) -> torch.Tensor:
    """:func:`pattern_dropout_seq` while ``torch.compile`` traces it: two custom ops."""
    if generator is not None:
        return _with_generator(x, pattern, generator)
    vals, codes = _seq_draw(x.detach(), pattern_key(pattern))  # no gradient through a draw
    return _seq_apply(x, vals, codes)
