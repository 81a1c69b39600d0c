"""The v2 ops (issue 20): realised rate at every map side, the cap at 4 px, eval identity,
and the baselines as points: equal masks (same seed) or equal in distribution."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from adsearch.ops import make_dropout, render_mask
from adsearch.ops.baselines import Dropout, SpatialDropout, VariationalDropout
from adsearch.ops.dropblock import DropBlock2d
from adsearch.ops.v2 import ConvDropout2, SeqDropout2, conv2_dropout, conv2_dropped, seq2_dropout
from adsearch.patterns import SearchSpace
from adsearch.patterns.baselines2 import baseline_patterns
from adsearch.patterns.conv2 import ConvPattern2, resolve
from adsearch.patterns.seq2 import SEQ2_KINDS, SeqSub2

SIDES = (4, 8, 16, 32, 56)

CONV_CASES = [
    ConvPattern2(rate=0.05, kind="element"),
    ConvPattern2(rate=0.3, kind="element", share_c=True),
    ConvPattern2(rate=0.2, kind="channel"),
    ConvPattern2(rate=0.1, kind="block", side=0.1875),
    ConvPattern2(rate=0.5, kind="block", side=0.75, share_c=True),
    ConvPattern2(rate=0.2, kind="tile", side=0.25),
    ConvPattern2(rate=0.4, kind="tile", side=0.125, rotate=30, shear_x=0.5, share_c=True),
    ConvPattern2(rate=0.15, kind="tile", side=0.5, rotate=45, shear_y=0.25),
]


def _check_mean(fracs: torch.Tensor, rate: float, what: str) -> None:
    """Mean of independent per-map fractions vs ``rate``: 6 standard errors (CLT; the
    per-map variance is estimated, floored at the variance of one Bernoulli unit per map
    so a near-constant fraction still gets a tolerance)."""
    m = fracs.numel()
    var = max(float(fracs.var()), rate * (1 - rate) / 4096)
    tol = 6.0 * math.sqrt(var / m)
    assert abs(float(fracs.mean()) - rate) <= tol, (what, float(fracs.mean()), rate, tol)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("pattern", CONV_CASES, ids=lambda p: f"{p.kind}-{p.rate}-{p.side}")
def test_conv_realised_rate_at_every_map_side(pattern: ConvPattern2, side: int) -> None:
    gen = torch.Generator().manual_seed(side)
    maps = max(400, 400_000 // (side * side))
    dropped = conv2_dropped(pattern, (maps, 1, side, side), torch.device("cpu"), gen)
    fracs = dropped.float().mean(dim=(1, 2, 3))
    _check_mean(fracs, pattern.rate, f"{resolve(pattern, side, side)}")


@pytest.mark.parametrize("kind", SEQ2_KINDS)
def test_seq_realised_rate(kind: str) -> None:
    sub = SeqSub2(0.2, kind, 8)
    x = torch.ones(2000, 16, 24)  # D = 24 is not a multiple of 16 groups' ceil: groups differ
    out = seq2_dropout(x, sub, True, torch.Generator().manual_seed(1))
    fracs = (out == 0).float().mean(dim=(1, 2))
    _check_mean(fracs, 0.2, kind)
    kept = out[out != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / 0.8))  # textbook scaling


def test_seq_structures() -> None:
    x = torch.ones(64, 10, 16)
    g = torch.Generator().manual_seed(0)
    tok = seq2_dropout(x, SeqSub2(0.3, "token"), True, g) == 0
    assert (tok.all(2) | (~tok).all(2)).all()  # whole D-vectors
    var = seq2_dropout(x, SeqSub2(0.3, "variational"), True, g) == 0
    assert (var == var[:, :1]).all()  # the same mask at every time step
    grp = seq2_dropout(x, SeqSub2(0.3, "group", 4), True, g) == 0
    assert (grp.view(64, 10, 4, 4) == grp.view(64, 10, 4, 4)[..., :1]).all()  # 4 channels
    inter = seq2_dropout(x, SeqSub2(0.3, "interleave", 4), True, g) == 0
    assert (inter.view(64, 10, 4, 4) == inter.view(64, 10, 4, 4)[:, :, :1]).all()  # c mod 4


def test_no_pattern_under_the_cap_drops_a_whole_map_at_4px() -> None:
    """At 4 px, top rate, largest structure, shared over channels: a tile never drops a
    whole map (its gap is at least one pattern-frame step and its side at most 3 px); a
    block drops one only if all 4 corner seeds fire (probability gamma**4, here < 1%);
    element-wise, 0.5**16."""
    gen = torch.Generator().manual_seed(0)
    for rot in (0, 15, 30, 45):
        for shear in (0.0, 0.25, 0.5):
            for frac in (0.0625, 0.375, 0.75):
                p = ConvPattern2(rate=0.5, kind="tile", side=frac, rotate=rot, shear_x=shear,
                                 shear_y=shear, share_c=True)
                d = conv2_dropped(p, (2000, 1, 4, 4), torch.device("cpu"), gen)
                assert not d.flatten(1).all(1).any(), p
    p = ConvPattern2(rate=0.5, kind="block", side=0.75, share_c=True)
    g = resolve(p, 4, 4)
    assert g.gamma**4 < 0.01
    d = conv2_dropped(p, (20000, 1, 4, 4), torch.device("cpu"), gen)
    whole = float(d.flatten(1).all(1).float().mean())
    assert whole <= g.gamma**4 + 6 * math.sqrt(g.gamma**4 / 20000)


def test_eval_identity_rate_zero_and_gradients() -> None:
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    for p in CONV_CASES:
        m = ConvDropout2(p).eval()
        assert m(x) is x
        m.train()
        y = m(x)
        y.sum().backward()
        assert x.grad is not None and torch.equal(x.grad == 0, y == 0)  # dropped units get no grad
        x.grad = None
    assert conv2_dropout(x, ConvPattern2(rate=0.0, kind="block"), True) is x
    assert type(make_dropout(ConvPattern2(rate=0.0))).__name__ == "Identity"
    s = torch.randn(2, 5, 8)
    assert SeqDropout2(SeqSub2(0.2, "token")).eval()(s) is s


def test_seeded_draws_repeat_and_render() -> None:
    p = ConvPattern2(rate=0.3, kind="tile", side=0.25, rotate=15)
    a = render_mask(p, (3, 16, 16), seed=4)
    b = render_mask(p, (3, 16, 16), seed=4)
    assert torch.equal(a, b) and a.dtype == torch.bool
    assert render_mask(SeqSub2(0.2, "token"), (12, 8), seed=1).shape == (12, 8)


# ---------------------------------------------------------------- baselines as points
def test_spatial_is_the_same_function() -> None:
    """channel calls F.dropout2d, as SpatialDropout does: the same seed gives the same
    output (equal masks, equal scaling)."""
    x = torch.randn(8, 6, 16, 16)
    torch.manual_seed(7)
    want = SpatialDropout(0.1).train()(x)
    torch.manual_seed(7)
    assert torch.equal(want, ConvDropout2(ConvPattern2(rate=0.1, kind="channel")).train()(x))


def test_variational_is_the_same_function() -> None:
    x = torch.randn(4, 9, 16)
    torch.manual_seed(3)
    want = VariationalDropout(0.3).train()(x)
    torch.manual_seed(3)
    assert torch.equal(want, SeqDropout2(SeqSub2(0.3, "variational")).train()(x))


def _law_stats(dropped: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-row statistics of a ``(rows, units)`` bool mask: the drop fraction, the co-drop
    fraction of neighbours 1 apart (units of one random byte and of one word), 8 apart (the
    next word's byte at the same place) and 1031 apart (far)."""
    d = dropped.double()
    return (d.mean(1),) + tuple((d[:, k:] * d[:, :-k]).mean(1) for k in (1, 8, 1031))


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.25, 0.5])
def test_element_is_dropout_in_distribution(rate: float) -> None:
    """Element-wise draws a random byte per unit plus Poisson hits (adsearch.ops.v2), not
    F.dropout's float per unit: the law is the same, i.i.d. Bernoulli(rate). Against
    ``nn.Dropout`` (two-sample) and against the exact values (rate, rate**2 for any pair):
    each statistic is a mean over independent rows, so 6 standard errors (CLT) bound it."""
    rows, units = 400, 16 * 32 * 32
    x = torch.ones(rows, 16, 32, 32)
    ours = conv2_dropout(x, ConvPattern2(rate=rate, kind="element"), True,
                         torch.Generator().manual_seed(11)) == 0
    torch.manual_seed(12)
    theirs = Dropout(rate).train()(x) == 0
    for a, b, want in zip(_law_stats(ours.view(rows, units)), _law_stats(theirs.view(rows, units)),
                          (rate, rate**2, rate**2, rate**2), strict=True):
        se_a, se_b = float(a.std()) / math.sqrt(rows), float(b.std()) / math.sqrt(rows)
        assert abs(float(a.mean()) - want) <= 6 * se_a, (float(a.mean()), want, se_a)
        assert abs(float(a.mean() - b.mean())) <= 6 * math.hypot(se_a, se_b)
    out = conv2_dropout(x, ConvPattern2(rate=rate, kind="element"), True)
    assert torch.allclose(out[out != 0], torch.full_like(out[out != 0], 1 / (1 - rate)))


def test_element_draw_law_at_rates_off_the_byte_grid() -> None:
    """The byte threshold alone drops floor(256 rate) / 256 (0.19922 at 0.2); the Poisson
    hits make up the rest exactly, and below 1/256 a uniform draw is used: the realised rate
    over 2**24 units is within 6 binomial standard errors of the rate, the hits included."""
    from adsearch.ops.v2 import _element_src

    n = 2**24
    for rate in (0.2, 0.3, 0.001):
        src, t = _element_src(n, rate, torch.device("cpu"), torch.Generator().manual_seed(3))
        frac = float((src < t).double().mean())
        assert abs(frac - rate) <= 6 * math.sqrt(rate * (1 - rate) / n), (rate, frac)
        if rate >= 1 / 256:
            assert abs(frac - math.floor(256 * rate) / 256) > 6 * math.sqrt(rate / n)  # hits


def test_seq_element_is_dropout_in_distribution() -> None:
    rows = 300
    x = torch.ones(rows, 32, 64)
    ours = seq2_dropout(x, SeqSub2(0.2, "element"), True, torch.Generator().manual_seed(5)) == 0
    for stat, want in zip(_law_stats(ours.view(rows, -1)), (0.2, 0.04, 0.04, 0.04), strict=True):
        assert abs(float(stat.mean()) - want) <= 6 * float(stat.std()) / math.sqrt(rows)


def test_fast_ops_seeded_repeat_layouts_dtypes_and_retained_graph() -> None:
    """The CPU element and block ops: the same generator gives the same output on every
    layout and dtype; the mask is the one conv2_dropped draws (element) or the seeds'
    blocks of DropBlock's own code (block, with its realised scale); a second backward
    (retain_graph) gives the first one's gradient; gradcheck passes."""
    from adsearch.ops._common import keep_scale
    from adsearch.ops.dropblock import _BlockMul, _dropped_mask, bernoulli_positions

    x = torch.randn(6, 5, 13, 13, requires_grad=True)
    for pat in (ConvPattern2(rate=0.3, kind="element"), ConvPattern2(rate=0.2, kind="block",
                side=0.25), ConvPattern2(rate=0.4, kind="block", side=0.5, share_c=True)):
        y = conv2_dropout(x, pat, True, torch.Generator().manual_seed(4))
        cl = x.detach().contiguous(memory_format=torch.channels_last)
        y_cl = conv2_dropout(cl, pat, True, torch.Generator().manual_seed(4))
        assert torch.equal(y_cl, y) and y_cl.is_contiguous(memory_format=torch.channels_last)
        for dt in (torch.float16, torch.bfloat16, torch.float64):
            y_dt = conv2_dropout(x.detach().to(dt), pat, True, torch.Generator().manual_seed(4))
            assert y_dt.dtype == dt and torch.equal(y_dt == 0, y == 0)
        up = torch.randn_like(y)
        y.backward(up, retain_graph=True)
        assert x.grad is not None
        first, x.grad = x.grad.clone(), None
        y.backward(up)
        assert torch.equal(first, x.grad)
        x.grad = None
        assert torch.equal(first == 0, (y == 0) | (up == 0))
        xd = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda t, p=pat: conv2_dropout(t, p, True, torch.Generator().manual_seed(1)), (xd,))
        if pat.kind == "element":
            d = conv2_dropped(pat, tuple(x.shape), torch.device("cpu"),
                              torch.Generator().manual_seed(4))
            assert torch.equal(d, y == 0)
            continue
        geo = resolve(pat, 13, 13)
        cs = 1 if pat.share_c else 5
        v = 13 - geo.side + 1
        seeds = bernoulli_positions(6 * cs * v * v, geo.gamma, x.device,
                                    torch.Generator().manual_seed(4))
        d = _dropped_mask(seeds, (6, cs, 13, 13), geo.side)
        kept = (d.numel() - torch.count_nonzero(d)) * (5 // cs)
        want = _BlockMul.apply(x.detach(), d, seeds, keep_scale(x.numel(), kept), geo.side)
        assert torch.equal(y.detach(), want)


def _opening(d: torch.Tensor, b: int) -> torch.Tensor:
    """Morphological opening by a b x b square: the union of the b x b squares inside ``d``."""
    inside = -F.max_pool2d(-d.float(), b, stride=1)  # 1 where a whole square is dropped
    return F.max_pool2d(F.pad(inside, (b - 1, b - 1, b - 1, b - 1)), b, stride=1) > 0


@pytest.mark.parametrize("side", [16, 8, 4])
def test_dropblock_b3_equals_its_v2_point_in_distribution(side: int) -> None:
    """Round 3's DropBlock(0.2, b3) and its v2 point at each map side: both are unions of
    3x3 blocks inside the map (opening by the block is the mask itself), drawn per channel,
    with rates within the grid's half step; and with the seed probability matched, the
    pixelwise drop probability and the lag-1 co-dropping agree within 6 standard errors."""
    sp = SearchSpace.from_name("conv2-3")
    pats = baseline_patterns("dropblock", 0.2, sp, 3, (16, 8, 4))
    pat = pats[(16, 8, 4).index(side)]
    n = 80_000 // (side * side) + 200
    gen = torch.Generator().manual_seed(side)
    ours = conv2_dropped(pat, (n, 4, side, side), torch.device("cpu"), gen)
    x = torch.ones(n, 4, side, side)
    theirs = DropBlock2d(0.2, 3).train()(x, torch.Generator().manual_seed(side + 1)) == 0
    for d in (ours, theirs):
        flat = d.reshape(-1, 1, side, side)
        assert torch.equal(_opening(flat, 3), flat)  # block shape: 3x3 squares
        # per-channel draws: channels of one example differ
        assert (d[:, 0] != d[:, 1]).any()
    r_ours, r_theirs = float(ours.float().mean()), float(theirs.float().mean())
    assert abs(r_ours - pat.rate) < 0.01 and abs(r_ours - r_theirs) <= 0.025 + 0.01
    # same seed probability -> the same law: compare DropBlock2d at the v2 gamma
    geo = resolve(pat, side, side)
    vh = side - 2
    p_match = geo.gamma * 9 * vh * vh / (side * side)
    theirs = DropBlock2d(p_match, 3).train()(x, torch.Generator().manual_seed(9)) == 0
    for stat in (lambda d: d.float().mean(dim=(1, 2, 3)),
                 lambda d: (d[..., 1:] & d[..., :-1]).float().mean(dim=(1, 2, 3))):
        a, b = stat(ours), stat(theirs)
        se = math.sqrt(float(a.var()) / a.numel() + float(b.var()) / b.numel())
        assert abs(float(a.mean()) - float(b.mean())) <= 6 * se + 1e-9
