"""Torch dropout ops: learned AutoDropout patterns and the hand-designed baselines.

Every regularizer is a pure function (the maths) plus a thin ``nn.Module`` that keeps the
hyperparameters and returns its input itself when not training (timm's layout).
:func:`make_dropout` turns a pattern, a baseline spec dict or ``None`` into a module, and
:func:`set_progress` drives schedules (DropBlock's linear keep-probability).
"""

from __future__ import annotations

from adsearch.ops.baselines import (
    Dropout,
    Identity,
    SpatialDropout,
    VariationalDropout,
    variational_dropout,
)
from adsearch.ops.conv import PatternDropout2d, conv_canvas, pattern_dropout_2d, pattern_geometry
from adsearch.ops.dropblock import DropBlock2d, drop_block_2d
from adsearch.ops.factory import (
    SPEC_KEYS,
    make_dropout,
    render_mask,
    set_progress,
)
from adsearch.ops.seq import PatternDropoutSeq, pattern_dropout_seq

__all__ = [
    "SPEC_KEYS",
    "DropBlock2d",
    "Dropout",
    "Identity",
    "PatternDropout2d",
    "PatternDropoutSeq",
    "SpatialDropout",
    "VariationalDropout",
    "conv_canvas",
    "drop_block_2d",
    "make_dropout",
    "pattern_dropout_2d",
    "pattern_dropout_seq",
    "pattern_geometry",
    "render_mask",
    "set_progress",
    "variational_dropout",
]
