"""Benchmark: does the controller learn, how fast, and how much does staleness cost?

Measured in one run, on ``SearchSpace("conv", 3)`` (24 tokens) with the synthetic rewards
of :mod:`adsearch.controller.synthetic` (noise sigma = 0.05, noise-free maximum 1.0):

1. samples-to-threshold: the number of consumed samples until the mean reward of the last
   16 consumed samples reaches ``0.9 * max``, for the Transformer controller and for
   random search, over ``--seeds`` seeds (medians; runs that never reach it are censored
   at the cap and reported as ">cap"). For random search we also report its natural figure,
   the samples until *one* sample's noise-free reward reaches ``0.9 * max``.
2. latency: median wall time of ``sample(16)`` + ``update(16 pairs)`` on one CPU thread.
3. staleness: rewards arrive 2-4 controller versions late (each sample finishes a uniform
   2, 3 or 4 updates after it was drawn, out of order), with ``correction="clip"`` (the
   default), ``"truncate"`` and ``"none"``.

Run: ``.venv/bin/python benchmarks/bench_controller.py [--seeds 10] [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch

from adsearch.controller import get_default_config, make_controller
from adsearch.controller.synthetic import make_reward
from adsearch.patterns import SearchSpace

SPACE = SearchSpace("conv", 3)
THRESHOLD = 0.9  # fraction of the noise-free maximum reward (1.0)


@dataclass
class RunResult:
    samples: int | None  # consumed samples until the rolling mean hit the threshold (None: cap)
    best_single: int | None  # samples until one noise-free reward >= threshold (None: cap)
    mean_staleness: float  # mean staleness (versions) of the consumed samples
    final_mean: float  # rolling mean reward at the end of the run


def run_search(
    kind: str,
    reward_name: str,
    seed: int,
    config: dict[str, Any] | None = None,
    cap: int = 4000,
    batch: int | None = None,
    delay: tuple[int, int] = (0, 0),
    window_size: int = 16,
) -> RunResult:
    """Run one search until the mean of the last ``window_size`` rewards reaches the threshold.

    ``delay=(lo, hi)``: each sample finishes ``randint(lo, hi)`` steps after it is drawn;
    every step draws ``batch`` samples and updates on whatever finished (one update per
    step), so staleness in versions equals the delay once the pipeline is full.
    """
    ctrl = make_controller(kind, SPACE, config, seed)
    batch = batch or ctrl.config.batch_size
    reward = make_reward(reward_name, SPACE, seed=seed)
    rng = random.Random(10_000 + seed)  # reward noise and delays
    window: deque[float] = deque(maxlen=window_size)
    pending: list[tuple[int, Any]] = []
    consumed, step, best_single = 0, 0, None
    stale_sum = 0.0
    while consumed < cap:
        for s in ctrl.sample(batch):
            pending.append((step + rng.randint(*delay), s))
        ready = [s for t, s in pending if t <= step]
        pending = [(t, s) for t, s in pending if t > step]
        step += 1
        if not ready:
            continue
        pairs = []
        for s in ready:
            r = reward(s.tokens, rng)
            pairs.append((s, r))
            window.append(r)
            consumed += 1
            if best_single is None and reward(s.tokens, noise=False) >= THRESHOLD:
                best_single = consumed
        st = ctrl.update(pairs)
        stale_sum += st.mean_staleness * st.n
        if len(window) == window_size and statistics.fmean(window) >= THRESHOLD:
            return RunResult(consumed, best_single, stale_sum / consumed, statistics.fmean(window))
    return RunResult(None, best_single, stale_sum / max(consumed, 1), statistics.fmean(window))


def median_censored(values: list[int | None], cap: int) -> str:
    """Median with censored runs counted as +inf; '>cap' when the median is censored."""
    keyed = sorted(v if v is not None else float("inf") for v in values)
    n = len(keyed)
    mid = keyed[n // 2] if n % 2 else (keyed[n // 2 - 1] + keyed[n // 2]) / 2
    reached = sum(v is not None for v in values)
    txt = f">{cap}" if mid == float("inf") else f"{mid:.0f}"
    return f"{txt} ({reached}/{n} reached)"


def median_value(values: list[int | None], cap: int) -> float:
    keyed = sorted(v if v is not None else float("inf") for v in values)
    n = len(keyed)
    mid = keyed[n // 2] if n % 2 else (keyed[n // 2 - 1] + keyed[n // 2]) / 2
    return float(mid)


def latency(kind: str, batch: int = 16, reps: int = 60) -> dict[str, float]:
    """Median ms of sample(batch), update(batch) and both, on a warm controller.

    Wall time and process CPU time are both reported: on a shared machine wall time
    includes waiting for a core, CPU time does not.
    """
    ctrl = make_controller(kind, SPACE, seed=0)
    reward = make_reward("match", SPACE, seed=0)
    rng = random.Random(0)
    for _ in range(5):  # warm-up
        ss = ctrl.sample(batch)
        ctrl.update([(s, reward(s.tokens, rng)) for s in ss])
    t_s, t_u, t_b, c_b = [], [], [], []
    for _ in range(reps):
        c0 = time.process_time()
        t0 = time.perf_counter()
        ss = ctrl.sample(batch)
        t1 = time.perf_counter()
        ctrl.update([(s, reward(s.tokens, rng)) for s in ss])
        t2 = time.perf_counter()
        c_b.append(time.process_time() - c0)
        t_s.append(t1 - t0)
        t_u.append(t2 - t1)
        t_b.append(t2 - t0)
    ms = 1000.0
    return {
        "sample": ms * statistics.median(t_s),
        "update": ms * statistics.median(t_u),
        "both": ms * statistics.median(t_b),
        "both_min": ms * min(t_b),
        "both_cpu": ms * statistics.median(c_b),
    }


def section_search(seeds: list[int], cap: int, random_cap: int) -> None:
    print("## samples to threshold (median over seeds; censored runs count as > cap)\n")
    print(
        "| reward | method | samples (mean of last 16 rewards >= 0.9) "
        "| samples (one sample >= 0.9, noise-free) | ratio random/controller |"
    )
    print("| --- | --- | --- | --- | --- |")
    for reward_name in ("match", "interaction"):
        ctrl = [run_search("transformer", reward_name, s, cap=cap) for s in seeds]
        rand = [run_search("random", reward_name, s, cap=random_cap) for s in seeds]
        mc = median_value([r.samples for r in ctrl], cap)
        mr = median_value([r.samples for r in rand], random_cap)
        if mc == float("inf"):
            ratio = "n/a (controller censored)"
        elif mr == float("inf"):
            ratio = f">= {random_cap / mc:.1f}x (random censored at {random_cap})"
        else:
            ratio = f"{mr / mc:.1f}x"
        print(
            f"| {reward_name} | controller | {median_censored([r.samples for r in ctrl], cap)} "
            f"| {median_censored([r.best_single for r in ctrl], cap)} | {ratio} |"
        )
        print(
            f"| {reward_name} | random | {median_censored([r.samples for r in rand], random_cap)} "
            f"| {median_censored([r.best_single for r in rand], random_cap)} | |"
        )


def section_latency() -> None:
    print("\n## latency, batch of 16, one CPU thread (ms; median of 60 unless noted)\n")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"1-minute load average at the start: {load:.1f} on {os.cpu_count()} cores\n")
    print(
        "| controller | sample (wall) | update (wall) | sample + update (wall) "
        "| sample + update (wall, min) | sample + update (CPU time) | target |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for kind in ("transformer", "random"):
        lat = latency(kind)
        target = "<= 20 ms" if kind == "transformer" else "(anchor)"
        print(
            f"| {kind} | {lat['sample']:.2f} | {lat['update']:.2f} | {lat['both']:.2f} "
            f"| {lat['both_min']:.2f} | {lat['both_cpu']:.2f} | {target} |"
        )


def section_staleness(seeds: list[int], cap: int) -> None:
    print("\n## staleness: rewards arrive 2-4 versions late (match reward)\n")
    print("| correction | samples to threshold | mean staleness (versions) | final rolling mean |")
    print("| --- | --- | --- | --- |")
    rows: list[tuple[str, dict[str, Any], tuple[int, int]]] = [
        ("on-policy, no delay (default config)", {}, (0, 0)),
        ('"clip", clip_ratio 0.5 (default)', {"correction": "clip"}, (2, 4)),
        (
            '"clip", clip_ratio 0.2 (PPO\'s usual)',
            {"correction": "clip", "clip_ratio": 0.2},
            (2, 4),
        ),
        ('"truncate", min(r, 1)', {"correction": "truncate"}, (2, 4)),
        ('"none" (plain REINFORCE)', {"correction": "none"}, (2, 4)),
    ]
    for label, cfg, delay in rows:
        res = [run_search("transformer", "match", s, cfg, cap, delay=delay) for s in seeds]
        print(
            f"| {label} | {median_censored([r.samples for r in res], cap)} "
            f"| {statistics.fmean(r.mean_staleness for r in res):.2f} "
            f"| {statistics.median(r.final_mean for r in res):.3f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--cap", type=int, default=4000, help="controller sample cap per run")
    ap.add_argument("--random-cap", type=int, default=20000, help="random-search cap per run")
    ap.add_argument("--quick", action="store_true", help="3 seeds, smaller caps (smoke run)")
    ap.add_argument("--only", choices=("search", "latency", "staleness"), default=None)
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.cap, args.random_cap = 3, 2000, 2000
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    print(
        f"# bench_controller: space {SPACE.name}, {len(seeds)} seeds, threshold "
        f"{THRESHOLD:.0%} of max, update batch {get_default_config().batch_size} (default "
        "config), torch threads 1\n"
    )
    if args.only in (None, "search"):
        section_search(seeds, args.cap, args.random_cap)
    if args.only in (None, "latency"):
        section_latency()
    if args.only in (None, "staleness"):
        section_staleness(seeds, args.cap)


if __name__ == "__main__":
    main()
