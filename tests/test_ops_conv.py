"""Tests of pattern_dropout_2d / PatternDropout2d: statistics, structure, dtypes, autograd.

Tolerances (delta = 1e-6 failure probability per assertion):

- dropped fraction: the M windows of a batch are independent draws of a per-window
  fraction bounded in [a, b] (a, b: exact min/max over the canvas' windows), so Hoeffding
  gives ``|mean - E| <= (b - a) * sqrt(ln(2/delta) / (2M))``.
- per-position rate: each position is dropped in each of M windows independently with
  probability q, so the frequency is within ``6 * sqrt(q(1-q)/M)`` of q (a normal 6-sigma
  bound, ~1e-9 per position).
"""

from __future__ import annotations

import math

import pytest
import torch

from adsearch.errors import PatternError
from adsearch.ops.conv import PatternDropout2d, conv_canvas, pattern_dropout_2d, pattern_geometry
from adsearch.patterns import ConvPattern

torch.set_num_threads(2)
DELTA = 1e-6


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _canvas_stats(p: ConvPattern, h: int, w: int) -> tuple[float, float, float]:
    """Exact expected dropped fraction and the min/max per-window fraction of the canvas."""
    frac = 1.0 - conv_canvas(p, h, w).counts.double() / (h * w)
    return frac.mean().item(), frac.min().item(), frac.max().item()


def _hoeffding(a: float, b: float, m: int) -> float:
    return (b - a) * math.sqrt(math.log(2 / DELTA) / (2 * m)) + 1e-12


CASES = [
    ConvPattern(size=3, stride=4),  # plain tiling, 30 is not a multiple of the period 7
    ConvPattern(size=2, stride=6, share_c=True),
    ConvPattern(size=5, stride=3, rotate=30, shear_x=0.25),
    ConvPattern(size=4, stride=8, rotate=45, shear_y=0.5),
    ConvPattern(size=2, stride=3, repeat=3),  # finite group, fits the map
    ConvPattern(size=3, stride=2, repeat=2, rotate=15, shear_x=0.1),
]


@pytest.mark.parametrize("p", CASES, ids=str)
def test_dropped_fraction_matches_expectation(p: ConvPattern) -> None:
    h = w = 30
    x = torch.ones(48, 16, h, w)
    draws = [pattern_dropout_2d(x, p, True, _gen(s)) for s in range(3)]
    dropped = torch.stack([(d == 0) for d in draws]).double()
    m = 3 * 48 * (1 if p.share_c else 16)
    exact, lo, hi = _canvas_stats(p, h, w)
    assert abs(dropped.mean().item() - exact) <= _hoeffding(lo, hi, m)
    analytic = p.drop_fraction(h, w)
    if p.rotate == 0 and p.shear_x == 0 and p.shear_y == 0:
        assert exact == pytest.approx(analytic, abs=1e-12)
    else:  # pixel sampling of a rotated/sheared lattice (documented discretisation)
        assert abs(exact - analytic) <= 0.01 + 0.1 * analytic


@pytest.mark.parametrize("p", [CASES[0], CASES[4], CASES[2]], ids=str)
def test_every_position_equally_likely_and_unbiased(p: ConvPattern) -> None:
    """E[out] = x, and every position is dropped with the same probability."""
    h = w = 30
    gen = _gen(1)
    x = torch.rand(64, 16, h, w, generator=gen) + 0.5
    draws = 4
    kept_freq = torch.zeros(h, w, dtype=torch.float64)
    ratio = torch.zeros(h, w, dtype=torch.float64)
    for _ in range(draws):
        out = pattern_dropout_2d(x, p, True, gen)
        kept_freq += (out != 0).double().mean((0, 1))
        ratio += (out / x).double().mean((0, 1))
    kept_freq /= draws
    ratio /= draws
    m = draws * 64 * 16
    q, _, _ = _canvas_stats(p, h, w)
    sigma = math.sqrt(q * (1 - q) / m)
    if p.rotate == 0 and p.shear_x == 0 and p.shear_y == 0:
        # exact per-position probability: one period (plain) or the torus (finite group)
        assert (kept_freq - (1 - q)).abs().max().item() <= 6 * sigma
    else:
        assert (kept_freq - (1 - q)).abs().max().item() <= 6 * sigma + 0.01
    scale = 1 / (1 - q)
    assert (ratio - 1).abs().max().item() <= 6 * sigma * scale + (0.01 * scale if p.rotate else 0)


def test_sum_preserved_and_scale_is_realised_kept_fraction() -> None:
    x = torch.ones(8, 4, 17, 19)
    out = pattern_dropout_2d(x, ConvPattern(size=4, stride=3), True, _gen(3))
    kept = (out != 0).sum().item()
    assert out.sum().item() == pytest.approx(x.numel(), rel=1e-5)
    assert out[out != 0].unique().tolist() == pytest.approx([x.numel() / kept])


def test_hand_checked_shapes() -> None:
    def dropped(p: ConvPattern, n: int) -> list[list[int]]:
        return pattern_geometry(p, n, n).int().tolist()

    assert dropped(ConvPattern(size=2, stride=2), 6) == [
        [1, 1, 0, 0, 1, 1], [1, 1, 0, 0, 1, 1], [0] * 6, [0] * 6, [1, 1, 0, 0, 1, 1], [1, 1, 0, 0, 1, 1]
    ]
    # the canvas of a plain tiling is its geometry (one period of offsets, no anchor)
    plain = ConvPattern(size=3, stride=2)
    assert torch.equal(~conv_canvas(plain, 9, 9).kept[:9, :9], pattern_geometry(plain, 9, 9))
    # shear_x 0.5: row y shifts by y/2 pixels, so every second dropped row moves by one pixel
    sx = dropped(ConvPattern(size=1, stride=1, shear_x=0.5), 6)
    assert sx == [[1, 0, 1, 0, 1, 0], [0] * 6, [0, 1, 0, 1, 0, 1], [0] * 6, [1, 0, 1, 0, 1, 0], [0] * 6]
    sy = dropped(ConvPattern(size=1, stride=1, shear_y=0.5), 6)
    assert sy == [list(r) for r in zip(*sx, strict=True)]
    # rotate 45, period 4: centre (j+.5, i+.5) -> q = (u, v) / sqrt(2) with u = j - i,
    # v = i + j + 1; q mod 4 < 2 holds for u in {-3, 0, 1, 2} and v in {1, 2, 6, 7}
    assert dropped(ConvPattern(size=2, stride=2, rotate=45), 4) == [
        [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]
    ]
    # origin moved half a pixel down and right: u = j - i, v = i + j, v in {0, 1, 2, 6}
    shifted = pattern_geometry(ConvPattern(size=2, stride=2, rotate=45), 4, 4, (0.5, 0.5))
    assert shifted.int().tolist() == [[1, 1, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
    # one 4x4 square rotated 45 degrees (a finite group): a single diamond whose pixel
    # count is the closest to its area 16 over the sub-pixel anchors
    diamond = ~conv_canvas(ConvPattern(size=4, stride=1, repeat=1, rotate=45), 8, 8).kept[:8, :8]
    assert abs(int(diamond.sum()) - 16) <= 1
    rows = diamond.roll(3, 0)  # the diamond straddles row 0 on the torus
    widths = [int(r.sum()) for r in rows if r.any()]  # rise, then fall: one convex blob
    assert widths == sorted(widths[: len(widths) // 2 + 1]) + sorted(widths[len(widths) // 2 + 1 :], reverse=True)
    assert max(widths) >= 4


def test_share_c_channels_identical_else_different() -> None:
    x = torch.ones(4, 8, 16, 16)
    shared = pattern_dropout_2d(x, ConvPattern(size=3, stride=2, share_c=True), True, _gen(0))
    assert torch.equal(shared, shared[:, :1].expand_as(shared))
    per = pattern_dropout_2d(x, ConvPattern(size=3, stride=2, share_c=False), True, _gen(0))
    distinct = {tuple(per[0, c].flatten().tolist()) for c in range(8)}
    assert len(distinct) > 1  # P(all 8 equal) = 25**-7


def test_eval_identity_and_module() -> None:
    x = torch.randn(2, 3, 8, 8)
    m = PatternDropout2d(ConvPattern())
    assert "size=3, stride=4" in repr(m)
    assert m.eval()(x) is x
    assert pattern_dropout_2d(x, ConvPattern(), False) is x
    m.train()
    assert not torch.equal(m(x), x)


def test_drops_everything_without_nan() -> None:
    x = torch.randn(3, 2, 7, 7, requires_grad=True)
    out = pattern_dropout_2d(x, ConvPattern(size=7, stride=1, repeat=1), True, _gen(0))
    assert torch.equal(out, torch.zeros_like(out))
    out.sum().backward()
    assert x.grad is not None and torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("p", [CASES[0], CASES[1], CASES[3]], ids=str)
def test_gradcheck(p: ConvPattern) -> None:
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: pattern_dropout_2d(t, p, True, _gen(5)), (x,))
    out = pattern_dropout_2d(x, p, True, _gen(5))
    (g,) = torch.autograd.grad(out.sum(), x)
    mask = pattern_dropout_2d(torch.ones_like(x), p, True, _gen(5))
    assert torch.equal(g, mask)  # the gradient is the regenerated, scaled mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("p", [CASES[0], CASES[1]], ids=str)
def test_dtypes_and_channels_last(dtype: torch.dtype, p: ConvPattern) -> None:
    x = torch.randn(4, 5, 9, 11).to(dtype)
    ref = pattern_dropout_2d(x, p, True, _gen(7))
    assert ref.dtype == dtype and ref.shape == x.shape
    exact = pattern_dropout_2d(x.double(), p, True, _gen(7))
    assert torch.equal(ref == 0, exact == 0)
    assert torch.allclose(ref.double(), exact, rtol=1e-2, atol=1e-2)
    cl = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    out = pattern_dropout_2d(cl, p, True, _gen(7))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, ref)
    out.backward(torch.ones_like(out))
    assert torch.equal(cl.grad, pattern_dropout_2d(torch.ones_like(x), p, True, _gen(7)))


def test_seeded_generator_reproduces() -> None:
    x = torch.randn(4, 6, 12, 12)
    p = ConvPattern(size=2, stride=3, rotate=15)
    a = pattern_dropout_2d(x, p, True, _gen(11))
    assert torch.equal(a, pattern_dropout_2d(x, p, True, _gen(11)))
    assert not torch.equal(a, pattern_dropout_2d(x, p, True, _gen(12)))


def test_saved_tensors_are_small() -> None:
    """Autograd keeps the offsets and the canvas, not an N*C*H*W mask."""
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel() * t.element_size())
        return t

    x = torch.randn(32, 16, 32, 32, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        pattern_dropout_2d(x, ConvPattern(size=3, stride=4), True, _gen(0))
    assert sum(saved) < x.numel() // 16


def test_bad_input() -> None:
    with pytest.raises(PatternError, match=r"4-D input of shape \(N, C, H, W\), got shape \(3, 8, 8\)"):
        pattern_dropout_2d(torch.ones(3, 8, 8), ConvPattern(), True)
    with pytest.raises(PatternError, match="floating-point"):
        pattern_dropout_2d(torch.ones(1, 1, 4, 4, dtype=torch.int64), ConvPattern(), True)
    with pytest.raises(PatternError, match="expected a ConvPattern, got SeqPattern"):
        from adsearch.patterns import SeqPattern

        pattern_dropout_2d(torch.ones(1, 1, 4, 4), SeqPattern(), True)  # type: ignore[arg-type]
    with pytest.raises(PatternError, match="expected a ConvPattern"):
        PatternDropout2d({"size": 3})  # type: ignore[arg-type]


@pytest.mark.parametrize("p", [ConvPattern(size=3, stride=4), ConvPattern(size=5, stride=3, share_c=True),
                               ConvPattern(size=3, stride=2, repeat=3, rotate=15)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_output_can_be_modified_in_place(p: ConvPattern, channels_last: bool) -> None:
    """torchvision's blocks do ``out += identity`` and ``ReLU(inplace=True)`` on a BN output:
    the op's output must be no view, and the gradient must match the out-of-place graph."""
    torch.manual_seed(0)
    x = torch.randn(4, 8, 16, 16, requires_grad=True)
    xi = x.to(memory_format=torch.channels_last) if channels_last else x
    skip = torch.randn(4, 8, 16, 16)
    gen = torch.Generator().manual_seed(3)
    y = pattern_dropout_2d(xi * 1.0, p, True, gen)
    assert not y._is_view()
    y += skip
    torch.relu_(y)
    y.square().sum().backward()
    assert x.grad is not None
    grad_inplace = x.grad.clone()
    x.grad = None
    ref = torch.relu(pattern_dropout_2d(xi * 1.0, p, True, torch.Generator().manual_seed(3)) + skip)
    ref.square().sum().backward()
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(grad_inplace, x.grad)
