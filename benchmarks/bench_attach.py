#!/usr/bin/env python3
"""Training-step overhead of ``adsearch.sites.attach`` on torchvision's resnet18 (CPU).

One SGD step (forward, backward, update) of ``torchvision.models.resnet18(num_classes=10)``
on a CIFAR-size batch ``(32, 3, 32, 32)``, float32, for:

- ``none``: the plain model (the anchor);
- ``attach(None)``: attached with no regularizer (nothing inserted; the handle alone);
- ``attach(hand)``: a hand pattern per stage (space conv-5, residual on the last two
  stages), the ratio the target is about (at most 1.15x none);
- ``attach(hand, per-channel)``: the same squares placed per channel (``share_c`` false);
- ``surgery(hand)``: the same ops inserted as ``nn.Sequential(bn, op)`` by hand, so that
  ``attach(hand) / surgery(hand)`` is the cost of the attach mechanism itself.

Medians of per-step times; one step of every variant per round, in one run. The ratios use
the process CPU time of a step (``time.process_time``), which on a shared machine leaves out
the time other jobs held the core; wall-clock medians are printed next to them. Pin it::

    taskset -c 1 .venv/bin/python benchmarks/bench_attach.py [--threads 1] [--rounds 40]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torchvision
from torch import nn

from adsearch.ops import make_dropout
from adsearch.patterns import ConvPattern
from adsearch.sites import attach, find_sites

X_SHAPE = (32, 3, 32, 32)
# stage maps at 32x32: 16, 8, 4, 2, 1 pixels
HAND = [
    ConvPattern(size=3, stride=6, share_c=True),
    ConvPattern(size=2, stride=4, share_c=True),
    ConvPattern(size=2, stride=4, share_c=True),
    ConvPattern(size=1, stride=2, share_c=True, residual=True),
    ConvPattern(size=1, stride=1, repeat=1, share_c=True, residual=True),
]


def _surgery(model: nn.Module, pats: list[ConvPattern]) -> nn.Module:
    """Insert ``nn.Sequential(bn, op)`` after the same batch norms as attach (no shortcuts)."""
    sites = find_sites(model, torch.zeros(1, *X_SHAPE[1:]))
    for site, pat in zip(sites, pats, strict=True):
        for name in site.modules:
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, nn.Sequential(getattr(parent, attr), make_dropout(pat)))
    return model


def _variants() -> dict[str, Callable[[], nn.Module]]:
    def build() -> nn.Module:
        torch.manual_seed(0)
        return torchvision.models.resnet18(weights=None, num_classes=10)

    def attached(reg: object) -> Callable[[], nn.Module]:
        def make() -> nn.Module:
            m = build()
            m._attachment = attach(m, reg, torch.zeros(1, *X_SHAPE[1:]))  # type: ignore[assignment]
            return m

        return make

    per_channel = [ConvPattern(**{**p.to_dict(), "share_c": False}) for p in HAND]
    return {
        "none": build,
        "attach(None)": attached(None),
        "attach(hand)": attached(HAND),
        "attach(hand, per-channel)": attached(per_channel),
        "surgery(hand)": lambda: _surgery(build(), HAND),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--rounds", type=int, default=40, help="timed steps per variant (one per round)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = {k: make().train() for k, make in _variants().items()}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*X_SHAPE, generator=g)
    y = torch.randint(0, 10, (X_SHAPE[0],), generator=g)
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for k, m in models.items()}
    names = list(models)
    times: dict[str, list[float]] = {k: [] for k in models}  # process CPU seconds
    walls: dict[str, list[float]] = {k: [] for k in models}  # wall-clock seconds
    for r in range(args.rounds + 1):  # round 0 warms caches and is not timed
        # one step of each variant per round, starting at a different variant each round,
        # so a change in machine load hits every variant alike
        for j in range(len(names)):
            k = names[(r + j) % len(names)]
            m, opt = models[k], opts[k]
            c0, t0 = time.process_time(), time.perf_counter()
            loss = nn.functional.cross_entropy(m(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if r:
                times[k].append(time.process_time() - c0)
                walls[k].append(time.perf_counter() - t0)
    base = statistics.median(times["none"])
    surg = statistics.median(times["surgery(hand)"])
    wbase = statistics.median(walls["none"])
    print(
        f"# torchvision resnet18, batch {X_SHAPE[0]}x3x32x32, CPU float32, "
        f"{args.threads} thread(s), {args.rounds} steps per variant, round-robin"
    )
    print(
        "| variant | median CPU time per step (ms) | ratio vs none | ratio vs surgery(hand) "
        "| median wall (ms) | wall ratio vs none |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for k, v in times.items():
        med, wmed = statistics.median(v), statistics.median(walls[k])
        print(
            f"| {k} | {1000 * med:.1f} | {med / base:.3f}x | {med / surg:.3f}x "
            f"| {1000 * wmed:.1f} | {wmed / wbase:.3f}x |"
        )


if __name__ == "__main__":
    main()
