#!/usr/bin/env python3
"""How faithfully does the CIFAR-10-mini search child rank patterns? (issue: end-to-end proof)

Runs the search proxy child of ``benchmarks/search_cifar_mini.sh`` (WRN-10-2, 300/class
train, disjoint 100/class validation from ``cifar10-jpg/train``, 3 epochs) for a fixed set of
patterns (none, the hand-picked pattern, and patterns drawn at random from conv-3 with a
fixed seed) under several child seeds, and reports:

- **seed noise**: the median over patterns of the seed-to-seed std of the final validation
  accuracy, against the **signal**: the std of the per-pattern means;
- **ranking agreement across seeds**: Spearman correlation between the pattern rankings
  given by seed ``a`` and by seed ``b`` (median over seed pairs). With ``--child-seed`` every
  child of a search shares one seed, so this is how far one search's ranking can be trusted;
- **epoch 1 vs final**: Spearman correlation between the ranking at the end of epoch 1 and
  the final ranking (median over seeds), the basis of ``--prune-at-epoch 1``, and the share
  of patterns in the bottom 40% at epoch 1 that end in the top 40% (what pruning would lose).

Validation split only; the test split is never read.

Usage::

    .venv/bin/python benchmarks/bench_reward_noise.py [--patterns 8] [--seeds 3] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from adsearch.patterns import ConvPattern, SearchSpace
from adsearch.tasks import Budget, get_task

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"
MACHINE = "2-core shared CPU, no GPU"
HAND = [ConvPattern(size=3, stride=6), ConvPattern(size=2, stride=4), ConvPattern(size=2, stride=4)]


def ranks(xs: list[float]) -> list[float]:
    """Average ranks (ties share their mean rank)."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    out = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return cov / (va * vb) ** 0.5 if va and vb else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patterns", type=int, default=8, help="patterns in all (none and hand included)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="tiny protocol (smoke run; not written)")
    args = ap.parse_args()
    if args.patterns < 3 or args.seeds < 2:
        ap.error("need --patterns >= 3 and --seeds >= 2 to measure noise and rankings")
    torch.set_num_threads(args.threads)
    space = SearchSpace.from_name("conv-3")
    rng = random.Random(0)
    regs: dict[str, Any] = {"none": None, "hand": HAND}
    for i in range(args.patterns - 2):
        regs[f"random {i}"] = space.sample(rng)
    cfg = {"data": str(DATA / "cifar10-jpg"), "train_per_class": 20 if args.quick else 300,
           "val_per_class": 10 if args.quick else 100, "split_seed": 0, "depth": 10, "width": 2,
           "epochs": 2 if args.quick else 3, "batch_size": 64, "lr": 0.05}
    task = get_task("cifar10")
    config = task.config_from_dict(cfg)
    final: dict[str, list[float]] = {k: [] for k in regs}
    first: dict[str, list[float]] = {k: [] for k in regs}
    t0 = time.time()
    for seed in range(args.seeds):
        for label, reg in regs.items():
            res = task.run_child(config, reg, Budget(), "cpu", seed)
            final[label].append(res.reward)
            first[label].append(res.curve[0]["val_metric"])
            print(f"  seed {seed} {label}: epoch 1 {first[label][-1]:.3f}, final {res.reward:.3f} ({res.seconds:.0f} s)", flush=True)
    means = {k: statistics.fmean(v) for k, v in final.items()}
    noise = statistics.median(statistics.stdev(v) for v in final.values())
    signal = statistics.stdev(means.values())
    labels = list(regs)
    pair_rho = [spearman([final[k][a] for k in labels], [final[k][b] for k in labels])
                for a, b in itertools.combinations(range(args.seeds), 2)]
    early_rho = [spearman([first[k][s] for k in labels], [final[k][s] for k in labels]) for s in range(args.seeds)]
    lost, bottom_n = 0, 0
    cut = max(1, int(0.4 * len(labels)))
    for s in range(args.seeds):
        by_first = sorted(labels, key=lambda k: first[k][s])[:cut]
        top_final = set(sorted(labels, key=lambda k: final[k][s], reverse=True)[:cut])
        lost += sum(k in top_final for k in by_first)
        bottom_n += len(by_first)
    rows = []
    print(f"\nCIFAR-10-mini search child (WRN-10-2, {cfg['train_per_class']}/class, {cfg['epochs']} epochs), {args.seeds} seeds\n")
    print("| pattern | drop fraction (mean of 3 sites) | epoch-1 val acc | final val acc |")
    print("| --- | ---: | ---: | ---: |")
    for k, reg in regs.items():
        frac = 0.0 if reg is None else statistics.fmean(  # WRN groups act on 32, 16 and 8 px maps
            p.drop_fraction(n, n) for p, n in zip(reg, (32, 16, 8), strict=True))
        row = {"pattern": k, "patterns": None if reg is None else [p.to_dict() for p in reg], "drop_fraction": frac,
               "epoch1": first[k], "final": final[k]}
        rows.append(row)
        print(f"| {k} | {frac:.3f} | {statistics.fmean(first[k]):.3f} ± {statistics.stdev(first[k]):.3f} | "
              f"{means[k]:.3f} ± {statistics.stdev(final[k]):.3f} |")
    summary = {"seed_noise_median_std": noise, "signal_std_of_means": signal, "signal_to_noise": signal / noise if noise else float("inf"),
               "spearman_across_seeds_median": statistics.median(pair_rho), "spearman_epoch1_vs_final_median": statistics.median(early_rho),
               "pruned_but_top": f"{lost}/{bottom_n}"}
    print("\n| measure | value |\n| --- | ---: |")
    print(f"| seed noise: median seed-to-seed std of final val acc | {noise:.4f} |")
    print(f"| signal: std of the per-pattern means | {signal:.4f} |")
    print(f"| signal / noise | {summary['signal_to_noise']:.2f} |")
    print(f"| rank agreement between two seeds (Spearman, median of pairs) | {summary['spearman_across_seeds_median']:.2f} |")
    print(f"| epoch-1 ranking vs final ranking (Spearman, median over seeds) | {summary['spearman_epoch1_vs_final_median']:.2f} |")
    print(f"| bottom 40% at epoch 1 that finish in the top 40% | {lost}/{bottom_n} |")
    print(f"\n{time.time() - t0:.0f} s in all; torch threads {args.threads}; machine: {MACHINE}")
    if not args.quick:
        out = {"command": "python " + " ".join(["benchmarks/bench_reward_noise.py", *sys.argv[1:]]),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": MACHINE, "torch": torch.__version__,
               "python": platform.python_version(), "config": cfg, "seeds": args.seeds, "rows": rows, "summary": summary,
               "seconds": time.time() - t0}
        (RESULTS / "reward_noise.json").write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {RESULTS / 'reward_noise.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
