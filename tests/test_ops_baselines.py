"""Tests of the hand-designed baselines: DropBlock (against torchvision), dropout variants.

DropBlock tolerances are two-sample 6-sigma bounds from the empirical variances: M
independent maps per implementation, ``|mean_a - mean_b| <= 6 sqrt(var_a/M + var_b/M)``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import drop_block2d as tv_drop_block2d

from adsearch.errors import PatternError
from adsearch.ops import (
    DropBlock2d,
    Dropout,
    Identity,
    SpatialDropout,
    VariationalDropout,
    drop_block_2d,
    variational_dropout,
)
from adsearch.ops.dropblock import bernoulli_positions

torch.set_num_threads(2)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(("p", "block", "hw"), [(0.1, 7, 20), (0.2, 3, 16), (0.15, 5, 9)])
def test_dropblock_statistics_match_torchvision(p: float, block: int, hw: int) -> None:
    torch.manual_seed(0)
    x = torch.ones(128, 16, hw, hw)
    ours = torch.cat([(drop_block_2d(x, p, block, True, _gen(s)) == 0) for s in range(4)]).double()
    theirs = torch.cat([(tv_drop_block2d(x, p, block) == 0) for _ in range(4)]).double()
    m = ours.shape[0] * ours.shape[1]
    a, b = ours.mean((2, 3)).flatten(), theirs.mean((2, 3)).flatten()
    assert abs(a.mean() - b.mean()).item() <= 6 * math.sqrt((a.var() + b.var()).item() / m)
    # per position (edges are dropped less: seeds only where a whole block fits)
    ra, rb = ours.mean((0, 1)), theirs.mean((0, 1))
    tol = 6 * torch.sqrt((ra * (1 - ra) + rb * (1 - rb)) / m) + 1e-9
    assert bool(((ra - rb).abs() <= tol).all())
    assert ra[0, 0].item() < ra[hw // 2, hw // 2].item()


def test_dropblock_drops_whole_blocks_inside_the_map() -> None:
    """Every dropped pixel lies in a fully dropped block_size x block_size square inside the map."""
    block = 5
    out = drop_block_2d(torch.ones(8, 4, 17, 17), 0.3, block, True, _gen(2))
    dropped = (out == 0).double().flatten(0, 1)[:, None]
    seeds = -F.max_pool2d(-dropped, block, stride=1)  # erosion: fully dropped blocks that fit
    opened = F.max_pool2d(F.pad(seeds, [block - 1] * 4), block, stride=1)  # dilation back
    assert dropped.sum() > 0
    assert torch.equal(opened, dropped)


def test_dropblock_rescale_schedule_and_eval() -> None:
    x = torch.ones(16, 8, 12, 12)
    out = drop_block_2d(x, 0.2, 3, True, _gen(4))
    kept = (out != 0).sum().item()
    assert out[out != 0].unique().tolist() == pytest.approx([x.numel() / kept])
    m = DropBlock2d(0.2, 3)
    assert "drop_prob=0.2, block_size=3" in repr(m)
    m.set_progress(0.0)
    assert m(x) is x
    m.set_progress(0.5)
    assert m.current_drop_prob == pytest.approx(0.1)
    assert torch.equal(m(x, _gen(5)), drop_block_2d(x, 0.1, 3, True, _gen(5)))
    assert m.eval()(x) is x
    shared = DropBlock2d(0.2, 3, share_c=True).train()(x, _gen(1))
    assert torch.equal(shared, shared[:, :1].expand_as(shared))
    with pytest.raises(PatternError, match=r"progress must be in \[0, 1\], got 1.5"):
        m.set_progress(1.5)


def test_dropblock_all_dropped_gradcheck_dtypes() -> None:
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    out = drop_block_2d(x, 0.99, 4, True, _gen(0))  # gamma = 1: one block covers the map
    assert torch.equal(out, torch.zeros_like(out))
    xd = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: drop_block_2d(t, 0.3, 3, True, _gen(1)), (xd,))
    ref = drop_block_2d(torch.ones(4, 3, 10, 10), 0.2, 3, True, _gen(3))
    for dtype in (torch.float16, torch.bfloat16):
        out = drop_block_2d(torch.ones(4, 3, 10, 10, dtype=dtype), 0.2, 3, True, _gen(3))
        assert torch.equal(out == 0, ref == 0) and out.dtype == dtype
    cl = torch.ones(4, 3, 10, 10).contiguous(memory_format=torch.channels_last)
    out = drop_block_2d(cl, 0.2, 3, True, _gen(3))
    assert torch.equal(out, ref) and out.is_contiguous(memory_format=torch.channels_last)


def test_bernoulli_positions_rate() -> None:
    total, prob = 200_000, 0.003
    pos = bernoulli_positions(total, prob, torch.device("cpu"), _gen(0))
    assert torch.equal(pos, pos.unique()) and int(pos.max()) < total and int(pos.min()) >= 0
    assert abs(len(pos) - total * prob) <= 6 * math.sqrt(total * prob)
    halves = torch.bincount((pos * 2) // total, minlength=2)  # no drift along the sequence
    assert abs(int(halves[0]) - int(halves[1])) <= 6 * math.sqrt(total * prob)
    dense = bernoulli_positions(10_000, 0.5, torch.device("cpu"), _gen(0))
    assert abs(len(dense) - 5000) <= 6 * 50


def test_dropout_spatial_variational_identity() -> None:
    x = torch.randn(4, 6, 5, 5)
    for m in (Dropout(0.3), SpatialDropout(0.3), Identity()):
        assert m.eval()(x) is x
    assert Identity().train()(x) is x
    sp = SpatialDropout(0.5).train()(torch.ones(64, 32, 3, 3))
    per_channel = sp.flatten(2)
    assert torch.equal(per_channel.amin(2), per_channel.amax(2))  # whole channels
    seq = torch.ones(256, 20, 32)
    v = VariationalDropout(0.25).train()(seq, _gen(0))
    assert torch.equal(v, v[:, :1].expand_as(v))  # locked over time
    frac = (v[:, 0] == 0).double().mean().item()
    assert abs(frac - 0.25) <= 6 * math.sqrt(0.25 * 0.75 / (256 * 32))
    assert v.unique().tolist() == pytest.approx([0.0, 1 / 0.75])
    assert VariationalDropout(0.25).eval()(seq) is seq
    assert torch.equal(variational_dropout(seq, 0.25, True, _gen(1)), variational_dropout(seq, 0.25, True, _gen(1)))


def test_baseline_bad_input() -> None:
    with pytest.raises(PatternError, match=r"drop_prob must be in \[0, 1\), got 1.0"):
        Dropout(1.0)
    with pytest.raises(PatternError, match="drop_prob must be a number"):
        VariationalDropout("0.1")  # type: ignore[arg-type]
    with pytest.raises(PatternError, match="block_size must be a positive int, got 0"):
        DropBlock2d(0.1, 0)
    with pytest.raises(PatternError, match=r"3-D input of shape \(N, T, D\)"):
        VariationalDropout(0.1).train()(torch.ones(2, 3, 4, 5))
    with pytest.raises(PatternError, match=r"4-D input of shape \(N, C, H, W\)"):
        SpatialDropout(0.1).train()(torch.ones(2, 3, 4))
    with pytest.raises(PatternError, match=r"4-D input"):
        DropBlock2d(0.1, 3).train()(torch.ones(2, 3, 4))
