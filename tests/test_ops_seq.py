"""Tests of pattern_dropout_seq / PatternDropoutSeq on (N, T, D).

Tolerances: each (example, step) row is dropped independently across examples with
probability ``size / period`` (uniform phase), so with M examples a per-step frequency is
within ``6 * sqrt(q(1-q)/M)`` of q; the overall dropped fraction averages M independent
per-example fractions in [0, 1]: Hoeffding ``sqrt(ln(2/1e-6) / (2M))``.
"""

from __future__ import annotations

import math

import pytest
import torch

from adsearch.errors import PatternError
from adsearch.ops import PatternDropoutSeq, pattern_dropout_seq
from adsearch.patterns import ConvPattern, SeqPattern

torch.set_num_threads(2)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


CASES = [
    SeqPattern(size=2, stride=8, mask="token", share_t=True),
    SeqPattern(size=4, stride=4, mask="group", groups=4, share_t=False),
    SeqPattern(size=1, stride=2, mask="interleave", groups=2, share_t=True),
    SeqPattern(size=8, stride=16, mask="group", groups=8, share_t=True),
]


@pytest.mark.parametrize("p", CASES, ids=str)
def test_dropped_fraction_and_per_step_rate(p: SeqPattern) -> None:
    n, t, d = 4096, 40, 16
    x = torch.ones(n, t, d)
    out = pattern_dropout_seq(x, p, True, _gen(0))
    dropped = (out == 0).double()
    q = p.drop_fraction()
    assert abs(dropped.mean().item() - q) <= math.sqrt(math.log(2e6) / (2 * n))
    per_step = dropped.amax(2).mean(0)  # a step is touched with probability size/period
    qt = p.size / p.period
    assert (per_step - qt).abs().max().item() <= 6 * math.sqrt(qt * (1 - qt) / n)
    per_elem = dropped.mean(0)  # and every (t, d) with probability q
    assert (per_elem - q).abs().max().item() <= 6 * math.sqrt(q * (1 - q) / n)
    kept = (out != 0).sum().item()
    assert out.sum().item() == pytest.approx(x.numel(), rel=1e-5)
    assert out[out != 0].unique().tolist() == pytest.approx([x.numel() / kept])


def test_unbiased_expectation() -> None:
    gen = _gen(3)
    x = torch.rand(2048, 24, 8, generator=gen) + 0.5
    p = CASES[1]
    ratio = (pattern_dropout_seq(x, p, True, gen) / x).double().mean(0)
    q = p.drop_fraction()
    sigma = math.sqrt(q * (1 - q) / 2048) / (1 - q)
    assert (ratio - 1).abs().max().item() <= 6 * sigma


def test_span_structure_and_channel_choice() -> None:
    t, d = 48, 16
    x = torch.ones(64, t, d)
    # token: spans of exactly `size` consecutive fully dropped steps, period size + stride
    out = pattern_dropout_seq(x, SeqPattern(size=4, stride=8, mask="token"), True, _gen(1))
    rows = (out == 0).all(2)
    assert torch.equal(rows, (out == 0).any(2))
    for r in rows:
        starts = [i for i in range(1, t) if r[i] and not r[i - 1]]  # full spans
        assert all(b - a == 12 for a, b in zip(starts, starts[1:], strict=False))
        assert r.sum().item() in range(12, 17)  # 4 spans of 4, partial at the ends
    # group: one contiguous block of d/groups channels; share_t: the same block in every span
    out = pattern_dropout_seq(x, SeqPattern(size=2, stride=4, mask="group", groups=4, share_t=True), True, _gen(2))
    drop = out == 0
    for ex in drop:
        chans = {tuple(ex[i].nonzero().flatten().tolist()) for i in range(t) if ex[i].any()}
        assert len(chans) == 1
        (c,) = chans
        assert c == tuple(range(c[0], c[0] + 4)) and c[0] % 4 == 0
    # without share_t, spans of one example choose their blocks independently
    out = pattern_dropout_seq(x, SeqPattern(size=2, stride=4, mask="group", groups=4, share_t=False), True, _gen(2))
    per_example = [{tuple(ex[i].nonzero().flatten().tolist()) for i in range(t) if ex[i].any()} for ex in out == 0]
    assert max(len(s) for s in per_example) > 1
    # interleave: every groups-th channel from a random phase
    out = pattern_dropout_seq(x, SeqPattern(size=2, stride=4, mask="interleave", groups=4), True, _gen(3))
    assert (out == 0).any(2).sum() >= 64 * 8  # spans were dropped (else the loop checks nothing)
    for ex in out == 0:
        for i in range(t):
            if ex[i].any():
                idx = ex[i].nonzero().flatten()
                assert torch.equal(idx, torch.arange(int(idx[0]), d, 4))


def test_eval_identity_gradcheck_and_generator() -> None:
    x = torch.randn(3, 10, 6)
    m = PatternDropoutSeq(CASES[1])
    assert "mask='group'" in repr(m)
    assert m.eval()(x) is x
    assert pattern_dropout_seq(x, CASES[0], False) is x
    for p in CASES[:3]:
        xd = torch.randn(3, 10, 6, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, p=p: pattern_dropout_seq(a, p, True, _gen(4)), (xd,))
        a = pattern_dropout_seq(x, p, True, _gen(9))
        assert torch.equal(a, pattern_dropout_seq(x, p, True, _gen(9)))
    assert not torch.equal(pattern_dropout_seq(x, CASES[1], True, _gen(1)), pattern_dropout_seq(x, CASES[1], True, _gen(2)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dtypes_and_noncontiguous(dtype: torch.dtype) -> None:
    x = torch.randn(5, 12, 8).to(dtype)
    for p in CASES:
        out = pattern_dropout_seq(x, p, True, _gen(6))
        ref = pattern_dropout_seq(x.double(), p, True, _gen(6))
        assert out.dtype == dtype
        assert torch.equal(out == 0, ref == 0)
        assert torch.allclose(out.double(), ref, rtol=1e-2, atol=1e-2)
    xt = torch.randn(12, 5, 8).transpose(0, 1).requires_grad_()  # (N, T, D), not contiguous
    out = pattern_dropout_seq(xt, CASES[1], True, _gen(6))
    out.sum().backward()
    assert torch.equal(xt.grad, pattern_dropout_seq(torch.ones(5, 12, 8), CASES[1], True, _gen(6)))  # type: ignore[arg-type]


def test_saved_tensors_are_small() -> None:
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel() * t.element_size())
        return t

    x = torch.randn(16, 128, 256, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        pattern_dropout_seq(x, CASES[1], True, _gen(0))
    assert sum(saved) < x.numel() // 16


def test_bad_input() -> None:
    with pytest.raises(PatternError, match=r"3-D input of shape \(N, T, D\), got shape \(4, 5\)"):
        pattern_dropout_seq(torch.ones(4, 5), CASES[0], True)
    with pytest.raises(PatternError, match="expected a SeqPattern, got ConvPattern"):
        pattern_dropout_seq(torch.ones(1, 4, 4), ConvPattern(), True)  # type: ignore[arg-type]
    with pytest.raises(PatternError, match="expected a SeqPattern"):
        PatternDropoutSeq(ConvPattern())  # type: ignore[arg-type]
