"""Build a dropout module from a spec, drive schedules, and render masks for people.

``make_dropout(spec)`` is the one place where a regularizer description becomes a module:

- a :class:`~adsearch.patterns.ConvPattern` -> :class:`PatternDropout2d`;
- a :class:`~adsearch.patterns.SeqPattern` -> :class:`PatternDropoutSeq`;
- ``None``, or a pattern with ``off = True`` (**ours**) -> :class:`Identity`;
- a dict with a ``"kind"`` key (see :data:`SPEC_KEYS` for each kind's keys and defaults)::

    {"kind": "none"}
    {"kind": "dropout", "drop_prob": 0.1}
    {"kind": "spatial", "drop_prob": 0.1}
    {"kind": "dropblock", "drop_prob": 0.1, "block_size": 7, "share_c": false}
    {"kind": "variational", "drop_prob": 0.1}
    {"kind": "pattern", "pattern": {...ConvPattern or SeqPattern fields...}}
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from adsearch.errors import PatternError
from adsearch.ops.baselines import Dropout, Identity, SpatialDropout, VariationalDropout
from adsearch.ops.conv import PatternDropout2d, pattern_dropout_2d
from adsearch.ops.dropblock import DropBlock2d
from adsearch.ops.seq import PatternDropoutSeq, pattern_dropout_seq
from adsearch.ops.v2 import ConvDropout2, SeqDropout2, conv2_dropped, seq2_keep
from adsearch.patterns.conv import ConvPattern
from adsearch.patterns.conv2 import ConvPattern2
from adsearch.patterns.decode import decode_pattern
from adsearch.patterns.seq import SeqPattern
from adsearch.patterns.seq2 import SeqSub2
from adsearch.strict import check_keys

__all__ = ["SPEC_KEYS", "make_dropout", "render_mask", "set_progress"]

#: Allowed keys (besides ``"kind"``) of every dict spec, with their defaults.
SPEC_KEYS: dict[str, dict[str, Any]] = {
    "none": {},
    "dropout": {"drop_prob": 0.1},
    "spatial": {"drop_prob": 0.1},
    "dropblock": {"drop_prob": 0.1, "block_size": 7, "share_c": False},
    "variational": {"drop_prob": 0.1},
    "pattern": {"pattern": None},
}

def make_dropout(spec: Any) -> nn.Module:
    """The dropout module described by ``spec`` (see the module docstring).

    Raises:
        PatternError: unknown kind or key, or a value out of range; the message lists the
            allowed kinds/keys.
    """
    if spec is None or (isinstance(spec, (ConvPattern, SeqPattern, ConvPattern2, SeqSub2))
                        and spec.off):
        return Identity()  # an off site (**ours**): no dropout here
    if isinstance(spec, ConvPattern2):  # the v2 spaces (issue 20)
        return ConvDropout2(spec)
    if isinstance(spec, SeqSub2):  # one sub-layer of a v2 SeqPattern2
        return SeqDropout2(spec)
    if isinstance(spec, ConvPattern):
        return PatternDropout2d(spec)
    if isinstance(spec, SeqPattern):
        return PatternDropoutSeq(spec)
    if not isinstance(spec, dict):
        raise PatternError(
            f"dropout spec: expected a ConvPattern, a SeqPattern, None or a dict with a 'kind' "
            f"key, got {type(spec).__name__}"
        )
    kind = spec.get("kind")
    if kind not in SPEC_KEYS:
        raise PatternError(
            f"dropout spec: unknown kind {kind!r}; allowed kinds are {', '.join(SPEC_KEYS)}"
        )
    allowed = SPEC_KEYS[kind]
    check_keys(spec, allowed, f"dropout spec of kind {kind!r}", besides=("kind",),
               error=PatternError)
    args = {**allowed, **{k: v for k, v in spec.items() if k != "kind"}}
    if kind == "none":
        return Identity()
    if kind == "dropout":
        return Dropout(args["drop_prob"])
    if kind == "spatial":
        return SpatialDropout(args["drop_prob"])
    if kind == "variational":
        return VariationalDropout(args["drop_prob"])
    if kind == "dropblock":
        share_c = args["share_c"]
        if not isinstance(share_c, bool):
            raise PatternError(f"dropout spec of kind 'dropblock': share_c must be true or false, got {share_c!r}")
        return DropBlock2d(args["drop_prob"], args["block_size"], share_c)
    if args["pattern"] is None:
        raise PatternError("dropout spec of kind 'pattern': missing key 'pattern' (the pattern's fields)")
    return make_dropout(decode_pattern(args["pattern"], what="pattern spec"))


_active = threading.local()


def set_progress(model: nn.Module, progress: float) -> int:
    """Call ``set_progress(progress)`` once on every module of ``model`` that has one.

    Args:
        model: any module; ``model`` itself is included.
        progress: fraction of training done, in [0, 1].

    Returns:
        The number of modules whose ``set_progress`` ran. A module whose own
        ``set_progress`` calls this helper on itself (to reach its children) is safe: it is
        not called again, and its children are called once.
    """
    if isinstance(progress, bool) or not isinstance(progress, (int, float)) or not 0.0 <= progress <= 1.0:
        raise PatternError(f"set_progress: progress must be a number in [0, 1], got {progress!r}")
    state: tuple[set[int], set[int]] | None = getattr(_active, "state", None)
    outer = state is None
    calling, done = state if state is not None else (set(), set())
    if outer:
        _active.state = (calling, done)
    before = len(done)
    try:
        for m in model.modules():
            fn = getattr(m, "set_progress", None)
            if not callable(fn) or id(m) in done or id(m) in calling:
                continue
            calling.add(id(m))
            try:
                fn(float(progress))
            finally:
                calling.discard(id(m))
            done.add(id(m))
        return len(done) - before
    finally:
        if outer:
            _active.state = None


def render_mask(
    pattern: ConvPattern | SeqPattern | ConvPattern2 | SeqSub2, shape: Sequence[int], seed: int = 0
) -> torch.Tensor:
    """One random draw of ``pattern``'s mask as a CPU ``torch.BoolTensor`` (True = kept).

    Args:
        pattern: a ConvPattern (``shape`` is ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``)
            or a SeqPattern (``shape`` is ``(T, D)`` or ``(N, T, D)``).
        shape: the mask's shape; leading dims default to 1.
        seed: seed of the torch.Generator; equal seeds give equal masks.

    Returns:
        Bool tensor of ``shape``: exactly the mask the op applies in training with a
        generator seeded with ``seed``.
    """
    dims = tuple(shape)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims):
        raise PatternError(f"render_mask: shape must be positive ints, got {dims!r}")
    gen = torch.Generator().manual_seed(int(seed))
    if isinstance(pattern, (ConvPattern, SeqPattern, ConvPattern2, SeqSub2)) and pattern.off:
        return torch.ones(dims, dtype=torch.bool)  # an off site keeps everything
    if isinstance(pattern, ConvPattern2) and 2 <= len(dims) <= 4:
        n, c, h, w = (1,) * (4 - len(dims)) + dims
        return ~conv2_dropped(pattern, (n, c, h, w), torch.device("cpu"), gen).expand(
            n, c, h, w).reshape(dims)
    if isinstance(pattern, SeqSub2) and 2 <= len(dims) <= 3:
        n, t, d = (1,) * (3 - len(dims)) + dims
        return seq2_keep(pattern, (n, t, d), torch.device("cpu"), gen).expand(n, t, d).reshape(dims)
    if isinstance(pattern, ConvPattern):
        if not 2 <= len(dims) <= 4:
            raise PatternError(
                f"render_mask: a ConvPattern needs shape (H, W), (C, H, W) or (N, C, H, W), got {dims!r}"
            )
        full = (1,) * (4 - len(dims)) + dims
        out = pattern_dropout_2d(torch.ones(full), pattern, True, gen)
    elif isinstance(pattern, SeqPattern):
        if not 2 <= len(dims) <= 3:
            raise PatternError(f"render_mask: a SeqPattern needs shape (T, D) or (N, T, D), got {dims!r}")
        full = (1,) * (3 - len(dims)) + dims
        out = pattern_dropout_seq(torch.ones(full), pattern, True, gen)
    else:
        raise PatternError(
            f"render_mask: expected a ConvPattern or SeqPattern, got {type(pattern).__name__}"
        )
    return (out != 0).reshape(dims)
