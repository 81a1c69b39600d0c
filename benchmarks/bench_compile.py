#!/usr/bin/env python3
"""What ``torch.compile`` costs and gains on an attached model (issue 23 §4), CPU.

One SGD step (forward, backward, update) of ``torchvision.models.resnet18(num_classes=10)``
on a ``(32, 3, 32, 32)`` float32 batch, with and without the ops of
``adsearch.sites.attach`` (the hand pattern of ``bench_attach.py``, space conv-5), eager
and compiled (``--backend``, default ``aot_eager`` and ``inductor``), in train mode:

- first call: seconds to trace and compile (forward and backward), once per variant;
- graphs and graph breaks (``torch._dynamo.explain``): while traced, each op is two
  ``torch.ops.adsearch`` custom ops, so the graph must not break at the ops;
- step: medians of the per-step **process CPU time** (a shared machine: the time other
  jobs hold the core is left out; wall medians are printed too). The variants are
  interleaved one step at a time.

The ratios that matter: ``compiled + ops`` against ``compiled`` (what the opaque ops cost
inside a compiled graph: inductor cannot fuse across them) and against ``eager + ops``.
Pin it::

    taskset -c 0 .venv/bin/python benchmarks/bench_compile.py [--rounds 20] [--backend inductor]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torchvision
from torch import nn

from adsearch.patterns import ConvPattern
from adsearch.sites import attach

X_SHAPE = (32, 3, 32, 32)
HAND = [
    ConvPattern(size=3, stride=6, share_c=True),
    ConvPattern(size=2, stride=4, share_c=True),
    ConvPattern(size=2, stride=4, share_c=True),
    ConvPattern(size=1, stride=2, share_c=True, residual=True),
    ConvPattern(size=1, stride=1, repeat=1, share_c=True, residual=True),
]


class Variant:
    """One model, its optimizer and its (maybe compiled) step."""

    def __init__(self, name: str, ops: bool, backend: str | None) -> None:
        torch.manual_seed(0)
        self.name = name
        self.model = torchvision.models.resnet18(num_classes=10).train()
        if ops:
            attach(self.model, HAND, torch.zeros(1, *X_SHAPE[1:]))
        self.fn: Callable[[torch.Tensor], torch.Tensor] = self.model
        if backend is not None:
            self.fn = torch.compile(self.model, backend=backend)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.cpu: list[float] = []
        self.wall: list[float] = []
        self.first_s = 0.0
        self.graphs = "-"

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        c0, w0 = time.process_time(), time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(self.fn(x), y).backward()
        self.opt.step()
        return time.process_time() - c0, time.perf_counter() - w0


def _explain(ops: bool) -> str:
    model = torchvision.models.resnet18(num_classes=10).train()
    if ops:
        attach(model, HAND, torch.zeros(1, *X_SHAPE[1:]))
    ex = torch._dynamo.explain(model)(torch.zeros(X_SHAPE))
    torch._dynamo.reset()
    return f"{ex.graph_count} graph(s), {ex.graph_break_count} break(s)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20, help="timed steps per variant")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--backend", action="append", default=None,
                    help="torch.compile backend (repeatable; default aot_eager and inductor)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    backends = args.backend or ["aot_eager", "inductor"]
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"{platform.processor() or platform.machine()}, threads {args.threads}, "
          f"rounds {args.rounds}, batch {X_SHAPE}")
    variants = [Variant("eager", False, None), Variant("eager + ops", True, None)]
    for b in backends:
        variants += [Variant(f"{b}", False, b), Variant(f"{b} + ops", True, b)]
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(X_SHAPE, generator=gen)
    y = torch.randint(0, 10, (X_SHAPE[0],), generator=gen)
    for v in variants:  # the first call traces and compiles
        t0 = time.perf_counter()
        v.step(x, y)
        v.first_s = time.perf_counter() - t0
    explained = {False: _explain(False), True: _explain(True)}
    for v in variants:
        if v.name != "eager" and v.name != "eager + ops":
            v.graphs = explained[v.name.endswith("+ ops")]
    for r in range(args.rounds + 1):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for v in order:
            cpu, wall = v.step(x, y)
            if r:  # round 0 warms up
                v.cpu.append(cpu)
                v.wall.append(wall)
    med = {v.name: statistics.median(v.cpu) for v in variants}
    print("\n| variant | first call s | dynamo graphs | CPU ms/step | vs eager | vs same w/o ops "
          "| wall ms/step |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for v in variants:
        base = v.name.removesuffix(" + ops")
        rel = f"{med[v.name] / med[base]:.3f}x" if v.name.endswith("+ ops") else "-"
        print(f"| {v.name} | {v.first_s:.1f} | {v.graphs} | {med[v.name] * 1e3:.1f} | "
              f"{med[v.name] / med['eager']:.3f}x | {rel} | {statistics.median(v.wall) * 1e3:.1f} |")


if __name__ == "__main__":
    main()
