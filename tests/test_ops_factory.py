"""Tests of make_dropout, set_progress and render_mask."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adsearch.errors import PatternError
from adsearch.ops import (
    DropBlock2d,
    Dropout,
    Identity,
    PatternDropout2d,
    PatternDropoutSeq,
    SpatialDropout,
    VariationalDropout,
    make_dropout,
    pattern_dropout_2d,
    pattern_dropout_seq,
    render_mask,
    set_progress,
)
from adsearch.patterns import ConvPattern, SeqPattern

torch.set_num_threads(2)


def test_make_dropout_every_kind() -> None:
    conv, seq = ConvPattern(size=2, stride=3, rotate=15), SeqPattern(mask="group")
    assert isinstance(make_dropout(None), Identity)
    assert isinstance(make_dropout({"kind": "none"}), Identity)
    m = make_dropout(conv)
    assert isinstance(m, PatternDropout2d) and m.pattern == conv
    assert isinstance(make_dropout(seq), PatternDropoutSeq)
    d = make_dropout({"kind": "dropout", "drop_prob": 0.3})
    assert isinstance(d, Dropout) and d.drop_prob == 0.3
    assert isinstance(make_dropout({"kind": "spatial"}), SpatialDropout)
    v = make_dropout({"kind": "variational", "drop_prob": 0.2})
    assert isinstance(v, VariationalDropout) and v.drop_prob == 0.2
    b = make_dropout({"kind": "dropblock", "drop_prob": 0.1, "block_size": 7})
    assert isinstance(b, DropBlock2d) and (b.drop_prob, b.block_size, b.share_c) == (0.1, 7, False)
    p = make_dropout({"kind": "pattern", "pattern": conv.to_dict()})
    assert isinstance(p, PatternDropout2d) and p.pattern == conv
    q = make_dropout({"kind": "pattern", "pattern": seq.to_dict()})
    assert isinstance(q, PatternDropoutSeq) and q.pattern == seq


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"kind": "cutout"}, "unknown kind 'cutout'; allowed kinds are none, dropout, spatial, dropblock, variational, pattern"),
        ({"drop_prob": 0.1}, "unknown kind None"),
        ({"kind": "dropout", "p": 0.1}, "unknown key.*'p'; allowed keys are drop_prob"),
        ({"kind": "none", "drop_prob": 0.1}, "allowed keys are none besides 'kind'"),
        ({"kind": "dropblock", "block": 7}, "allowed keys are drop_prob, block_size, share_c"),
        ({"kind": "dropout", "drop_prob": 1.5}, r"drop_prob must be in \[0, 1\)"),
        ({"kind": "dropblock", "block_size": -1}, "block_size must be a positive int"),
        ({"kind": "dropblock", "share_c": "yes"}, "share_c must be true or false"),
        ({"kind": "pattern"}, "missing key 'pattern'"),
        ({"kind": "pattern", "pattern": {"size": 3, "stride": 4}}, "cannot tell a ConvPattern from a SeqPattern"),
        ({"kind": "pattern", "pattern": {**ConvPattern().to_dict(), "size": 99}}, "ConvPattern.size: invalid value 99"),
        ({"kind": "pattern", "pattern": [1]}, "expected a JSON object"),
        ("dropout", "expected a ConvPattern, a SeqPattern, None or a dict"),
    ],
)
def test_make_dropout_bad_specs(spec: object, match: str) -> None:
    with pytest.raises(PatternError, match=match):
        make_dropout(spec)


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.drop = DropBlock2d(0.2, 3)
        self.calls = 0

    def set_progress(self, progress: float) -> None:  # a model that forwards to the helper
        self.calls += 1
        set_progress(self, progress)


def test_set_progress_reaches_every_submodule() -> None:
    model = nn.Sequential(nn.Conv2d(1, 1, 1), DropBlock2d(0.1, 7), nn.Sequential(DropBlock2d(0.3, 5)), _Block())
    n = set_progress(model, 0.25)
    blocks = [m for m in model.modules() if isinstance(m, DropBlock2d)]
    assert len(blocks) == 3 and all(b.progress == 0.25 for b in blocks)
    assert n == 4  # three DropBlocks and the _Block
    assert model[3].calls == 1
    model[3].set_progress(1.0)  # re-entrant call on itself does not recurse forever
    assert model[3].drop.progress == 1.0
    for bad in (-0.1, 1.01, "half", True):
        with pytest.raises(PatternError, match=r"progress must be a number in \[0, 1\]"):
            set_progress(model, bad)  # type: ignore[arg-type]


def test_render_mask_matches_the_op() -> None:
    p = ConvPattern(size=3, stride=2, rotate=30)
    m = render_mask(p, (4, 16, 16), seed=3)
    assert m.dtype == torch.bool and m.shape == (4, 16, 16)
    op = pattern_dropout_2d(torch.ones(1, 4, 16, 16), p, True, torch.Generator().manual_seed(3))
    assert torch.equal(m, op[0] != 0)
    assert torch.equal(m, render_mask(p, (4, 16, 16), seed=3))
    assert not torch.equal(m, render_mask(p, (4, 16, 16), seed=4))
    assert render_mask(p, (16, 16)).shape == (16, 16)
    assert render_mask(p, (2, 3, 8, 8)).shape == (2, 3, 8, 8)
    s = SeqPattern(size=4, stride=4, mask="interleave", groups=2)
    ms = render_mask(s, (32, 8), seed=1)
    assert torch.equal(ms, pattern_dropout_seq(torch.ones(1, 32, 8), s, True, torch.Generator().manual_seed(1))[0] != 0)
    assert (~ms).sum().item() == 32 * 8 // 4  # period 8: half the steps, half the channels
    with pytest.raises(PatternError, match=r"a ConvPattern needs shape \(H, W\), \(C, H, W\) or \(N, C, H, W\)"):
        render_mask(p, (16,))
    with pytest.raises(PatternError, match=r"a SeqPattern needs shape \(T, D\) or \(N, T, D\)"):
        render_mask(s, (1, 2, 3, 4))
    with pytest.raises(PatternError, match="shape must be positive ints"):
        render_mask(p, (0, 4))
    with pytest.raises(PatternError, match="expected a ConvPattern or SeqPattern"):
        render_mask({"size": 3}, (4, 4))  # type: ignore[arg-type]
