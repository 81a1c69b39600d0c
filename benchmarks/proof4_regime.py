#!/usr/bin/env python3
"""Proof round 4, step 1: the regime, measured fairly (issue 21 §1).

Every regularizer, **none included**, gets its training length tuned on validation: each
child is validated every epoch and keeps the weights of its best validation pass
(``keep_best``, early stopping with restore; the test metrics are those weights'). Rates are
a grid per kind. The best tuned regularizer is the one with the best **mean validation**
reward over the seeds run; its paired test difference against none (also at its own best
length) is the regime criterion: at least +1.5 points of test accuracy on CIFAR-10, with the
95% CI excluding 0, over at least 5 paired seeds.

Protocols (**ours**; the probe in ``../shared/docs/science.md`` is ``C32``):

- ``C32``: CIFAR-10 JPEG tree at 32 px (maps of 32, 16 and 8 px, the paper's sides),
  WRN-10-2, 100 training images a class, 200 a class of validation from the training folder
  (split seed 0), the whole test folder, no augmentation, 40 epochs, batch 50, SGD lr 0.05,
  wd 5e-4. About 150 s a child on one core.
- ``C32w``: the same with WRN-10-4 (more parameters on the same data, the lever science.md
  names).

Resumable: rows go to ``benchmarks/results/proof4/regime.json`` as each child ends, and a
rerun skips every (protocol, regularizer, seed) already there. Seeds are the outer loop, so
a cut-short scan is paired over the seeds it finished.

Usage::

    taskset -c 1 .venv/bin/python benchmarks/proof4_regime.py --protocol C32 --seeds 5
    .venv/bin/python benchmarks/proof4_regime.py --render        # tables and the criterion
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
OUT = REPO / "benchmarks" / "results" / "proof4" / "regime.json"

BASE = {"data": str(DATA / "cifar10-jpg"), "test_data": str(DATA / "cifar10-jpg" / "test"),
        "image_size": 32, "train_per_class": 100, "val_per_class": 200, "split_seed": 0,
        "depth": 10, "width": 2, "epochs": 40, "batch_size": 50, "lr": 0.05,
        "weight_decay": 5e-4, "pad": 0, "flip": False, "keep_best": True}
PROTOCOLS: dict[str, dict[str, Any]] = {"C32": BASE, "C32w": {**BASE, "width": 4}}

#: the tuned grid: per kind, rates (DropBlock with a 3 px block, as round 3)
REGS: dict[str, dict[str, Any] | None] = {
    "none": None,
    "dropout 0.1": {"kind": "dropout", "drop_prob": 0.1},
    "dropout 0.2": {"kind": "dropout", "drop_prob": 0.2},
    "dropout 0.3": {"kind": "dropout", "drop_prob": 0.3},
    "spatial 0.1": {"kind": "spatial", "drop_prob": 0.1},
    "spatial 0.2": {"kind": "spatial", "drop_prob": 0.2},
    "dropblock 0.1 b3": {"kind": "dropblock", "drop_prob": 0.1, "block_size": 3},
    "dropblock 0.2 b3": {"kind": "dropblock", "drop_prob": 0.2, "block_size": 3},
}
GAP_TARGET = 0.015  # test accuracy points (as a fraction) the best tuned one must beat none by


def load_rows() -> list[dict[str, Any]]:
    return json.loads(OUT.read_text()) if OUT.is_file() else []


def record(row: dict[str, Any]) -> None:
    """Append one child's row, atomically (write a temp file, then rename)."""
    OUT.parent.mkdir(parents=True, exist_ok=True)
    rows = load_rows() + [row]
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    tmp.replace(OUT)


def summary(rows: list[dict[str, Any]], protocol: str) -> dict[str, Any]:
    """Per regularizer: mean validation/test and best epoch; the validation pick; its paired
    test difference against none with the 95% t interval; whether the criterion is met."""
    from adsearch.verify.stats import paired_diff

    mine = [r for r in rows if r["protocol"] == protocol]
    by: dict[str, dict[int, dict[str, Any]]] = {}
    for r in mine:
        by.setdefault(r["regularizer"], {})[r["seed"]] = r
    table = {reg: {"n": len(s), "val_acc": statistics.fmean(v["val_acc"] for v in s.values()),
                   "test_acc": statistics.fmean(v["test_acc"] for v in s.values()),
                   "best_epoch": statistics.median(v["best_epoch"] for v in s.values()),
                   "seconds": statistics.median(v["seconds"] for v in s.values())}
             for reg, s in by.items()}
    out: dict[str, Any] = {"protocol": protocol, "config": PROTOCOLS[protocol], "table": table}
    if "none" not in by or len(table) < 2:
        return out
    # pick on validation, over the seeds every candidate and none share
    cands = [reg for reg in by if reg != "none"]
    pick = max(cands, key=lambda reg: paired_diff(
        {s: v["val_acc"] for s, v in by[reg].items()},
        {s: v["val_acc"] for s, v in by["none"].items()}).mean)
    d = paired_diff({s: v["test_acc"] for s, v in by[pick].items()},
                    {s: v["test_acc"] for s, v in by["none"].items()})
    out.update(pick=pick, test_gap=d.to_dict(),
               met=bool(d.n >= 5 and d.lo > 0 and d.mean >= GAP_TARGET))
    out["vs_none"] = {reg: paired_diff({s: v["test_acc"] for s, v in by[reg].items()},
                                       {s: v["test_acc"] for s, v in by["none"].items()}).to_dict()
                      for reg in cands}
    return out


def render(rows: list[dict[str, Any]]) -> str:
    lines = []
    for protocol in PROTOCOLS:
        s = summary(rows, protocol)
        if not s["table"]:
            continue
        lines += [f"### {protocol}", "", "| regularizer | seeds | val acc | test acc | "
                  "test vs none (95% CI) | best epoch | s / child |",
                  "| --- | ---: | ---: | ---: | --- | ---: | ---: |"]
        for reg, t in s["table"].items():
            d = s.get("vs_none", {}).get(reg)
            ci = (f"{100 * d['mean']:+.2f} [{100 * d['lo']:+.2f}, {100 * d['hi']:+.2f}]"
                  if d and d["n"] >= 2 else "")
            lines.append(f"| {reg} | {t['n']} | {100 * t['val_acc']:.2f} | "
                         f"{100 * t['test_acc']:.2f} | {ci} | {t['best_epoch']:.0f} | "
                         f"{t['seconds']:.0f} |")
        if "pick" in s:
            g = s["test_gap"]
            lines += ["", f"Picked on validation: **{s['pick']}**; test gap over none "
                      f"{100 * g['mean']:+.2f} points, 95% CI [{100 * g['lo']:+.2f}, "
                      f"{100 * g['hi']:+.2f}] over {g['n']} paired seeds; criterion "
                      f"(>= +1.5, CI above 0, >= 5 seeds) {'met' if s['met'] else 'not met'}."]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", choices=sorted(PROTOCOLS), default="C32")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--regs", default=None, help="comma list of regularizer labels (default all)")
    ap.add_argument("--render", action="store_true", help="print the tables and exit")
    args = ap.parse_args()
    if args.render:
        rows = load_rows()
        print(render(rows))
        (OUT.parent / "regime_summary.json").write_text(json.dumps(
            [summary(rows, p) for p in PROTOCOLS], indent=1) + "\n")
        return
    import torch

    from adsearch.tasks import get_task

    torch.set_num_threads(1)
    task = get_task("cifar10")
    config = task.config_from_dict(PROTOCOLS[args.protocol])
    regs = args.regs.split(",") if args.regs else list(REGS)
    unknown = [r for r in regs if r not in REGS]
    if unknown:
        sys.exit(f"unknown regularizer {unknown}: use labels of {list(REGS)}")
    for seed in range(args.seeds):
        for label in regs:
            if any(r["protocol"] == args.protocol and r["regularizer"] == label
                   and r["seed"] == seed for r in load_rows()):
                continue
            res = task.run_child(config, REGS[label], None, "cpu", seed)
            keys = ("val_acc", "val_loss", "test_acc", "test_loss", "train_loss", "best_epoch")
            record({"protocol": args.protocol, "regularizer": label, "seed": seed,
                    "seconds": res.seconds, **{k: res.metrics.get(k) for k in keys},
                    "curve": [{k: round(v, 5) for k, v in p.items()} for p in res.curve],
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "command": " ".join(["benchmarks/proof4_regime.py", *sys.argv[1:]])})
            print(f"{args.protocol} | {label} | seed {seed}: val {res.metrics['val_acc']:.4f} "
                  f"test {res.metrics['test_acc']:.4f} best epoch {res.metrics['best_epoch']:.0f}"
                  f" ({res.seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
