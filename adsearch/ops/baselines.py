"""Hand-designed dropout baselines with the same module interface as the pattern ops.

References: N. Srivastava et al., "Dropout", JMLR 2014 (:class:`Dropout`); J. Tompson et
al., "Efficient Object Localization Using Convolutional Networks", CVPR 2015
(:class:`SpatialDropout`, whole channels); Y. Gal, Z. Ghahramani, NeurIPS 2016 and
S. Merity et al., "Regularizing and Optimizing LSTM Language Models" (AWD-LSTM), ICLR 2018
(:class:`VariationalDropout`, one mask per sequence, locked over time). DropBlock lives in
:mod:`adsearch.ops.dropblock`.

These keep the textbook ``1 / (1 - p)`` scaling (an unbiased estimator in expectation),
unlike the pattern ops and DropBlock, which rescale by the realised kept fraction. Every
module returns its input itself when not training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adsearch.ops._common import check_prob, check_rank

__all__ = ["Dropout", "Identity", "SpatialDropout", "VariationalDropout", "variational_dropout"]


class Identity(nn.Module):
    """No dropout: returns its input itself, in training and in eval."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Dropout(nn.Module):
    """Element-wise dropout on a tensor of any shape.

    Args:
        drop_prob: probability of zeroing each element, in [0, 1).
    """

    def __init__(self, drop_prob: float = 0.1) -> None:
        super().__init__()
        self.drop_prob = check_prob(drop_prob, "drop_prob", "Dropout")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        return F.dropout(x, self.drop_prob, True)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class SpatialDropout(nn.Module):
    """Drops whole channels of an ``(N, C, H, W)`` map (``nn.Dropout2d``).

    Args:
        drop_prob: probability of zeroing each (example, channel), in [0, 1).
    """

    def __init__(self, drop_prob: float = 0.1) -> None:
        super().__init__()
        self.drop_prob = check_prob(drop_prob, "drop_prob", "SpatialDropout")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        check_rank(x, 4, "(N, C, H, W)", "SpatialDropout")
        return F.dropout2d(x, self.drop_prob, True)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def variational_dropout(
    x: torch.Tensor,
    drop_prob: float,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Locked dropout: one ``(N, 1, D)`` mask per sequence, shared by all time steps.

    Args:
        x: ``(N, T, D)`` floating tensor (batch first).
        drop_prob: probability of zeroing each (example, channel), in [0, 1).
        training: when False (or ``drop_prob == 0``), ``x`` itself is returned.
        generator: optional seeded ``torch.Generator``.
    """
    check_rank(x, 3, "(N, T, D)", "variational_dropout")
    check_prob(drop_prob, "drop_prob", "variational_dropout")
    if not training or drop_prob == 0.0:
        return x
    n, _, d = x.shape
    with torch.no_grad():
        gdev = generator.device if generator is not None else x.device
        keep = torch.rand(n, 1, d, generator=generator, device=gdev).to(x.device) >= drop_prob
        mask = keep.to(x.dtype) / (1.0 - drop_prob)
    return x * mask


class VariationalDropout(nn.Module):
    """Module form of :func:`variational_dropout` for ``(N, T, D)`` inputs.

    Args:
        drop_prob: probability of zeroing each (example, channel), in [0, 1).
    """

    def __init__(self, drop_prob: float = 0.1) -> None:
        super().__init__()
        self.drop_prob = check_prob(drop_prob, "drop_prob", "VariationalDropout")

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        return variational_dropout(x, self.drop_prob, True, generator)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"
