#!/usr/bin/env python3
"""Training-step time of a WRN with each regularizer, on CPU or CUDA (bf16 autocast there).

Prints a table of median step times and the ratio to ``none``, measured in one run with the
regularizers interleaved round by round. Used by ``benchmarks/gpu_check.sh`` for WRN-28-10
on a GPU; on the CPU, ``--depth 28 --width 2`` is the overhead section of bench_baselines.

Usage::

    .venv/bin/python benchmarks/bench_step.py [--device cuda] [--depth 28] [--width 10] [--batch 128]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from typing import Any

import torch

from adsearch.models import wide_resnet
from adsearch.ops import set_progress
from adsearch.patterns import ConvPattern

REGULARIZERS: dict[str, Any] = {
    "none": None,
    "dropblock 0.1 (7)": {"kind": "dropblock", "drop_prob": 0.1, "block_size": 7},
    "pattern (hand)": [ConvPattern(size=3, stride=6), ConvPattern(size=2, stride=4), ConvPattern(size=2, stride=4)],
    "pattern (rotate 30, shear)": [ConvPattern(size=3, stride=4, rotate=30, shear_x=0.25)] * 3,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--depth", type=int, default=28)
    ap.add_argument("--width", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    models = {k: wide_resnet(args.depth, args.width, 10, r).to(dev) for k, r in REGULARIZERS.items()}
    if cuda:
        models = {k: m.to(memory_format=torch.channels_last) for k, m in models.items()}
    x = torch.randn(args.batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (args.batch,), device=dev)
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.rounds):  # interleaved, so load changes hit every regularizer alike
        for k, m in models.items():
            opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
            set_progress(m, 1.0)
            for i in range(args.steps + 1):
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                ctx = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
                with ctx:
                    loss = torch.nn.functional.cross_entropy(m(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if cuda:
                    torch.cuda.synchronize()
                if i:  # the first step of a round warms caches
                    times[k].append(time.perf_counter() - t0)
    base = statistics.median(times["none"])
    name = torch.cuda.get_device_name(dev) if cuda else "cpu"
    print(f"# WRN-{args.depth}-{args.width}, batch {args.batch}, device {name}, "
          f"{'bf16 autocast' if cuda else 'float32'}, {args.rounds}x{args.steps} steps")
    print("| regularizer | median step (ms) | ratio vs none |")
    print("| --- | ---: | ---: |")
    for k, v in times.items():
        med = statistics.median(v)
        print(f"| {k} | {1000 * med:.1f} | {med / base:.3f}x |")


if __name__ == "__main__":
    main()
