#!/usr/bin/env python3
"""Hand-designed baselines: the bar that learned patterns must beat, on CPU-scale protocols.

Sections (run one with ``--section``; all by default):

- ``cifar``: CIFAR-10-mini. Train on a class-balanced 500/class subset of
  ``cifar10-jpg/train``, validate on a disjoint 100/class subset of it (split seed 0), test on
  all of ``cifar10-jpg/test`` (5,000). WRN-10-2, 4 epochs, batch 64, SGD-Nesterov, cosine.
  Regularizers: none, Dropout 0.1, SpatialDropout 0.1, DropBlock 0.1 (block 5, linear
  schedule), one hand-picked pattern (drop fraction ~11% per site).
- ``lm``: WikiText-2 mini (train ``test.txt``, validate on the first half of ``valid.txt``,
  test on the second half). 2-layer d=128 Pre-LN Transformer LM, BPTT 64, batch 16, 1 epoch.
  Regularizers: none, Dropout 0.1, variational 0.1, one hand-picked pattern.
- ``mt``: Multi30k En-Fr (train ``train``, select on ``val``, report ``test_2016_flickr``),
  2+2-layer d=128 Transformer, 1 epoch, greedy decoding, tokenized lowercased BLEU.
  Regularizers: none, Dropout 0.1.
- ``overhead``: training-step time of WRN-28-2 (batch 32, 32x32, CPU) with each
  regularizer relative to none, interleaved rounds in one process (target for a pattern:
  <= 1.05x).

Each section runs 3 seeds (``--seeds``) and reports mean ± std and the wall time per child.
Results accumulate in ``benchmarks/results/baselines.json`` and are rendered to
``benchmarks/results/baselines.md``. ``--quick`` shrinks every protocol (for a smoke run;
its figures are not comparable and are not written unless ``--write-quick``).

Usage::

    .venv/bin/python benchmarks/bench_baselines.py [--section cifar|lm|mt|overhead] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from adsearch.patterns import ConvPattern, SeqPattern
from adsearch.tasks import Budget, get_task

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"
MACHINE = "2-core shared CPU, no GPU"

HAND_CONV = [ConvPattern(size=3, stride=6), ConvPattern(size=2, stride=4), ConvPattern(size=2, stride=4)]
HAND_SEQ = [
    SeqPattern(size=1, stride=8, mask="token", share_t=False, sites=("emb",)),
    SeqPattern(size=4, stride=16, mask="group", groups=2, share_t=True, sites=("ffn_hidden", "residual")),
]


def regs_cifar() -> dict[str, Any]:
    return {
        "none": None,
        "dropout 0.1": {"kind": "dropout", "drop_prob": 0.1},
        "spatial 0.1": {"kind": "spatial", "drop_prob": 0.1},
        "dropblock 0.1 (5)": {"kind": "dropblock", "drop_prob": 0.1, "block_size": 5},
        "pattern (hand)": HAND_CONV,
    }


def run_section(name: str, task: str, cfg: dict[str, Any], regs: dict[str, Any], seeds: int, budget: Budget, keys: list[str]) -> dict[str, Any]:
    t = get_task(task)
    config = t.config_from_dict(cfg)
    rows = []
    for label, reg in regs.items():
        runs = []
        for seed in range(seeds):
            res = t.run_child(config, reg, budget, "cpu", seed)
            runs.append(res)
            print(f"  {name} {label} seed {seed}: " + ", ".join(f"{k}={res.metrics.get(k, float('nan')):.4g}" for k in keys) + f" ({res.seconds:.0f} s)", flush=True)
        row: dict[str, Any] = {"regularizer": label, "n": len(runs), "seconds": statistics.fmean(r.seconds for r in runs)}
        for k in keys:
            vals = [r.metrics[k] for r in runs if k in r.metrics]
            row[k] = [statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0] if vals else None
        row["diverged"] = sum(int(r.metrics.get("diverged", 0)) for r in runs)
        rows.append(row)
        if ON_ROW is not None:  # record finished rows at once: a long section may be cut short
            ON_ROW(name, {"config": config.to_dict(), "budget": budget.to_dict(), "seeds": seeds, "keys": keys, "rows": rows, "partial": True})
    return {"config": config.to_dict(), "budget": budget.to_dict(), "seeds": seeds, "keys": keys, "rows": rows}


def section_cifar(q: bool, seeds: int) -> dict[str, Any]:
    cfg = {"data": str(DATA / "cifar10-jpg"), "test_data": str(DATA / "cifar10-jpg" / "test"), "train_per_class": 50 if q else 500, "val_per_class": 20 if q else 100, "test_per_class": 20 if q else None, "depth": 10, "width": 2, "epochs": 1 if q else 4, "batch_size": 64, "lr": 0.05}
    return run_section("cifar", "cifar10", cfg, regs_cifar(), seeds, Budget(), ["val_acc", "test_acc"])


def section_lm(q: bool, seeds: int) -> dict[str, Any]:
    cfg = {"data": str(DATA / "wikitext-2"), "protocol": "mini", "epochs": 1.0, "curve_points": 0}
    regs = {"none": None, "dropout 0.1": {"kind": "dropout", "drop_prob": 0.1}, "variational 0.1": {"kind": "variational", "drop_prob": 0.1}, "pattern (hand)": HAND_SEQ}
    return run_section("lm", "wikitext2", {**cfg, **({"max_eval_tokens": 8192, "test": False} if q else {})}, regs, seeds, Budget(steps=20) if q else Budget(), ["val_ppl", "test_ppl"])


def section_mt(q: bool, seeds: int) -> dict[str, Any]:
    cfg = {"data": str(DATA / "multi30k-en-fr"), "epochs": 1.0, **({"train_limit": 2000, "eval_limit": 100} if q else {})}
    regs = {"none": None, "dropout 0.1": {"kind": "dropout", "drop_prob": 0.1}}
    return run_section("mt", "translation", cfg, regs, seeds, Budget(steps=20) if q else Budget(), ["val_bleu", "test_bleu"])


def section_overhead(q: bool, seeds: int) -> dict[str, Any]:
    from adsearch.models import wide_resnet
    from adsearch.ops import set_progress

    regs = {**regs_cifar(), "pattern (rotate 30, shear)": [ConvPattern(size=3, stride=4, rotate=30, shear_x=0.25)] * 3, "pattern (residual)": [ConvPattern(size=2, stride=4, residual=True)] * 3}
    regs["dropblock 0.1 (7)"] = {"kind": "dropblock", "drop_prob": 0.1, "block_size": 7}
    steps, rounds, batch = (2, 1, 16) if q else (4, 6, 32)
    models = {k: wide_resnet(28, 2, 10, r) for k, r in regs.items()}
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    times: dict[str, list[float]] = {k: [] for k in regs}
    for _ in range(rounds):  # interleave so that load changes hit every regularizer alike
        for k, m in models.items():
            opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
            set_progress(m, 1.0)
            for i in range(steps + 1):
                t0 = time.perf_counter()
                loss = torch.nn.functional.cross_entropy(m(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if i:  # the first step warms caches
                    times[k].append(time.perf_counter() - t0)
    base, base_min = statistics.median(times["none"]), min(times["none"])
    rows = [{"regularizer": k, "median_ms": 1000 * statistics.median(v), "ratio": statistics.median(v) / base, "min_ms": 1000 * min(v), "ratio_min": min(v) / base_min, "n": len(v)} for k, v in times.items()]
    return {"model": "WRN-28-2", "batch": batch, "steps_per_round": steps, "rounds": rounds, "rows": rows}


ON_ROW: Any = None

SECTIONS = {"cifar": section_cifar, "lm": section_lm, "mt": section_mt, "overhead": section_overhead}


def render(store: dict[str, Any]) -> str:
    out = ["# Baselines (hand-designed regularizers)", "", f"Machine: {MACHINE}. Produced by `benchmarks/bench_baselines.py` (see its docstring for the", "protocols); each section lists its command, date and torch threads. Wall time is per child, noisy on a shared machine.", ""]
    titles = {"cifar": "CIFAR-10-mini (WRN-10-2, 500/class train, 100/class val from train/, test = cifar10-jpg/test)", "lm": "WikiText-2 mini (Transformer LM, train = test.txt, val/test = halves of valid.txt)", "mt": "Multi30k En-Fr (Transformer seq2seq, val = val, test = test_2016_flickr; tokenized lowercased BLEU)", "overhead": "Training-step overhead vs none (WRN-28-2, CPU)"}
    for name in SECTIONS:
        if name not in store:
            continue
        s = store[name]
        out += [f"## {titles[name]}", "", f"Command: `{s['command']}` ({s['date']}, torch threads {s['threads']}, torch {s['torch']})", ""]
        if s.get("partial"):
            out += ["**Partial**: the run was still going (or was stopped) after the rows below.", ""]
        if name == "overhead":
            out += [f"batch {s['batch']}, {s['rounds']} interleaved rounds of {s['steps_per_round']} steps. On a shared CPU the minimum is the", "less contended estimate; the median shows the noise.", "", "| regularizer | min step (ms) | ratio (min) | median step (ms) | ratio (median) |", "| --- | ---: | ---: | ---: | ---: |"]
            out += [f"| {r['regularizer']} | {r.get('min_ms', float('nan')):.0f} | {r.get('ratio_min', float('nan')):.3f}x | {r['median_ms']:.0f} | {r['ratio']:.3f}x |" for r in s["rows"]]
        else:
            keys = s["keys"]
            out += [f"{s['seeds']} seeds, mean ± std", "", "| regularizer | " + " | ".join(keys) + " | s / child | diverged |", "| --- | " + " | ".join("---:" for _ in keys) + " | ---: | ---: |"]
            for r in s["rows"]:
                cells = [f"{r[k][0]:.4g} ± {r[k][1]:.2g}" if r[k] else "n/a" for k in keys]
                label = r["regularizer"] + (f" (n={r['n']})" if r["n"] != s["seeds"] else "")
                out.append(f"| {label} | " + " | ".join(cells) + f" | {r['seconds']:.0f} | {r['diverged']} |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--section", choices=[*SECTIONS, "all"], default="all")
    ap.add_argument("--quick", action="store_true", help="tiny protocols (smoke run)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per regularizer (default 3, quick 1)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--write-quick", action="store_true", help="also record --quick results")
    ap.add_argument("--render", action="store_true", help="only re-render baselines.md from baselines.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seeds = args.seeds or (1 if args.quick else 3)
    RESULTS.mkdir(parents=True, exist_ok=True)
    store_path = RESULTS / "baselines.json"
    t0 = time.time()
    if args.render:
        (RESULTS / "baselines.md").write_text(render(json.loads(store_path.read_text())) + "\n")
        return

    def save(name: str, res: dict[str, Any]) -> None:
        res.update(command="python " + " ".join(["benchmarks/bench_baselines.py", *sys.argv[1:]]), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), threads=args.threads, torch=torch.__version__, python=platform.python_version(), section_seconds=time.time() - t0)
        if args.quick and not args.write_quick:
            return
        with FileLock(str(store_path) + ".lock"):  # sections may run in parallel processes
            store = json.loads(store_path.read_text()) if store_path.is_file() else {}
            store[name] = res
            store_path.write_text(json.dumps(store, indent=1) + "\n")
            (RESULTS / "baselines.md").write_text(render(store) + "\n")

    global ON_ROW
    ON_ROW = save
    for name in SECTIONS if args.section == "all" else [args.section]:
        print(f"== {name}", flush=True)
        t0 = time.time()
        res = SECTIONS[name](args.quick, seeds)
        print(json.dumps(res["rows"], indent=1), flush=True)
        save(name, res)


if __name__ == "__main__":
    main()
