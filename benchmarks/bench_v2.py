"""Speed of the v2 ops (issue 20) per kind against the floor, in one run.

The floor is the bare masked multiply: ``x * m`` with a float mask ``m`` drawn beforehand, so
it costs one multiply forward and one backward and no random numbers. Every entry is timed
forward + backward (median of ``--runs`` runs after warm-up; entries run round-robin, so a
noisy neighbour slows all of them alike) and reported with its ratio to the floor of the
same run. Target (issue 20): element, channel and block within 1.3x of the floor.

Conv input ``(128, 64, 32, 32)``, seq input ``(32, 256, 512)``, rate 0.2.

``--clock cpu`` times with this thread's CPU time (``time.thread_time``: user + system, page
faults included) instead of the wall clock, so that time spent waiting for a busy core's
other jobs does not count; with one torch thread it is the op's own cost.

Usage: ``taskset -c 0 python benchmarks/bench_v2.py [--runs N] [--threads T] [--clock C]
[--quick]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch import nn

from adsearch.ops import DropBlock2d
from adsearch.ops.v2 import ConvDropout2, SeqDropout2
from adsearch.patterns.conv2 import ConvPattern2
from adsearch.patterns.seq2 import SeqSub2

TARGET = 1.3
TARGET_KINDS = ("element", "channel", "block")


class Floor(nn.Module):
    """``x * m`` with a mask drawn once (the floor: no random numbers, one multiply)."""

    def __init__(self, shape: tuple[int, ...], rate: float) -> None:
        super().__init__()
        self.m = (torch.rand(shape) >= rate).float() / (1 - rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.m


def entries(conv: tuple[int, ...], seq: tuple[int, ...]) -> list[tuple[str, str, nn.Module]]:
    r = 0.2
    out: list[tuple[str, str, nn.Module]] = [
        ("conv", "floor (x * m)", Floor(conv, r)),
        ("conv", "nn.Dropout(0.2)", nn.Dropout(r)),
        ("conv", "element", ConvDropout2(ConvPattern2(rate=r, kind="element"))),
        ("conv", "element share_c", ConvDropout2(ConvPattern2(rate=r, kind="element", share_c=True))),
        ("conv", "channel", ConvDropout2(ConvPattern2(rate=r, kind="channel"))),
        ("conv", "block 3/32", ConvDropout2(ConvPattern2(rate=r, kind="block", side=0.09375))),
        ("conv", "block 3/32 share_c",
         ConvDropout2(ConvPattern2(rate=r, kind="block", side=0.09375, share_c=True))),
        ("conv", "block 1/4", ConvDropout2(ConvPattern2(rate=r, kind="block", side=0.25))),
        ("conv", "tile 1/4 rot30", ConvDropout2(ConvPattern2(rate=r, kind="tile", side=0.25,
                                                             rotate=30))),
        ("conv", "DropBlock2d(0.2, 3) (v1 op)", DropBlock2d(r, 3)),
        ("seq", "floor (x * m)", Floor(seq, r)),
    ]
    for kind in ("element", "token", "group", "interleave", "variational"):
        out.append(("seq", kind, SeqDropout2(SeqSub2(r, kind, 8))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall clock, or this thread's CPU time (1 torch thread)")
    ap.add_argument("--conv-batch", type=int, default=128,
                    help="conv batch (64: a 16 MiB input, below glibc's 32 MiB mmap threshold, "
                         "so its buffers are reused without page faults)")
    ap.add_argument("--quick", action="store_true", help="small inputs (a smoke test)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    conv = (16, 16, 16, 16) if args.quick else (args.conv_batch, 64, 32, 32)
    seq = (4, 32, 64) if args.quick else (32, 256, 512)
    ents = entries(conv, seq)
    xs = {"conv": torch.randn(conv, requires_grad=True), "seq": torch.randn(seq, requires_grad=True)}
    for _, _, m in ents:
        m.train()

    clock = time.thread_time if args.clock == "cpu" else time.perf_counter

    def step(group: str, m: nn.Module) -> float:
        x = xs[group]
        t0 = clock()
        y = m(x)
        y.backward(torch.ones_like(y))
        dt = clock() - t0
        x.grad = None
        return dt

    for _ in range(3):  # warm-up
        for g, _, m in ents:
            step(g, m)
    times: dict[str, list[float]] = {f"{g}/{n}": [] for g, n, _ in ents}
    for _ in range(args.runs):  # round-robin
        for g, n, m in ents:
            times[f"{g}/{n}"].append(step(g, m))
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"threads {args.threads}, runs {args.runs}, clock {args.clock}, conv {conv}, seq {seq}")
    print("| group | op | fwd+bwd median ms | vs floor |")
    print("| --- | --- | ---: | ---: |")
    verdicts: list[str] = []
    for g, n, _ in ents:
        ratio = med[f"{g}/{n}"] / med[f"{g}/floor (x * m)"]
        print(f"| {g} | {n} | {med[f'{g}/{n}']:.2f} | {ratio:.2f}x |")
        if g == "conv" and n.split()[0] in TARGET_KINDS:
            ok = "PASS" if ratio <= TARGET else "MISS"
            verdicts.append(f"- {ok} conv {n}: {ratio:.2f}x floor (target <= {TARGET}x)")
    print()
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
