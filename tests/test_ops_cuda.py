"""CUDA checks: with one CPU generator, every op gives the same mask on CUDA as on the CPU.

Skipped where no GPU is present (the benchmark's ``--device cuda`` is the speed check).
"""

from __future__ import annotations

import pytest
import torch

from adsearch.ops import drop_block_2d, pattern_dropout_2d, pattern_dropout_seq, variational_dropout
from adsearch.patterns import ConvPattern, SeqPattern

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

torch.set_num_threads(2)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


OPS = [
    ("pattern plain", lambda x, g: pattern_dropout_2d(x, ConvPattern(size=3, stride=4), True, g), 4),
    ("pattern rot share_c", lambda x, g: pattern_dropout_2d(x, ConvPattern(size=2, stride=3, rotate=30, shear_x=0.25, share_c=True), True, g), 4),
    ("pattern repeat", lambda x, g: pattern_dropout_2d(x, ConvPattern(size=2, stride=2, repeat=2, rotate=15), True, g), 4),
    ("dropblock", lambda x, g: drop_block_2d(x, 0.2, 3, True, g), 4),
    ("seq group", lambda x, g: pattern_dropout_seq(x, SeqPattern(size=2, stride=2, mask="group", share_t=False), True, g), 3),
    ("variational", lambda x, g: variational_dropout(x, 0.2, True, g), 3),
]


@pytest.mark.parametrize(("name", "op", "rank"), OPS, ids=[o[0] for o in OPS])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(name: str, op, rank: int, dtype: torch.dtype) -> None:  # type: ignore[no-untyped-def]
    shape = (4, 6, 12, 12) if rank == 4 else (4, 24, 16)
    x = torch.randn(shape, generator=_gen(1)).to(dtype)
    cpu = op(x, _gen(2))
    xc = x.cuda().requires_grad_()
    out = op(xc, _gen(2))
    assert out.device.type == "cuda" and out.dtype == dtype
    assert torch.equal(out.cpu() == 0, cpu == 0)
    assert torch.allclose(out.cpu().double(), cpu.double(), rtol=1e-2, atol=1e-2)
    out.backward(torch.ones_like(out))
    assert xc.grad is not None and torch.equal(xc.grad.cpu() == 0, cpu == 0)
    if rank == 4:
        cl = x.cuda().contiguous(memory_format=torch.channels_last)
        out_cl = op(cl, _gen(2))
        assert torch.equal(out_cl, out.detach())
        assert out_cl.is_contiguous(memory_format=torch.channels_last)
    cuda_gen = torch.Generator(device="cuda")  # a generator on the device works as well
    a = op(x.cuda(), cuda_gen.manual_seed(3))
    assert torch.equal(a, op(x.cuda(), cuda_gen.manual_seed(3)))
