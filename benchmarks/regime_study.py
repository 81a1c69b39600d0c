#!/usr/bin/env python3
"""Proof round 3, step 1: find protocols where regularization matters (issue 15 §1).

A one-seed scan of candidate CPU-scale protocols: for each protocol, ``none`` and a few
hand-designed regularizers at middling rates. A protocol is *promising* when some
regularizer beats none on the **validation** split (the scan picks on validation only; test
is recorded, never used to choose). The chosen protocol's regime criterion (tuned baseline vs
none, >= 5 paired seeds, 95% CI) is then measured by ``adsearch verify``'s test stage, whose
baseline settings are tuned on validation (benchmarks/proof3.sh).

Protocols (**ours**):

- ``cifar``: CIFAR-10 JPEG tree, class-balanced train subset of ``cifar10-jpg/train`` and a
  disjoint 100/class validation subset of it (split seed 0), test = all of
  ``cifar10-jpg/test``. Images resized to ``image_size`` px (16 px makes a child ~4x cheaper),
  no crop (pad 0), SGD-Nesterov, cosine, wd 5e-4.
- ``lm``: WikiText-2 mini (train = first ``train_tokens`` of test.txt, val/test = halves of
  valid.txt), vocabulary capped at the ``max_vocab`` most frequent training words, 2-layer
  Pre-LN Transformer LM, AdamW.

Usage::

    taskset -c 0 .venv/bin/python benchmarks/regime_study.py --section cifar
    taskset -c 1 .venv/bin/python benchmarks/regime_study.py --section lm

Rows accumulate in ``benchmarks/results/regime.json`` (one entry per protocol x regularizer
x seed, written as each child ends, so a cut-short scan keeps what it ran).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from adsearch.tasks import get_task

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
OUT = REPO / "benchmarks" / "results" / "regime.json"


def cifar_protocols() -> dict[str, dict[str, Any]]:
    base = {"data": str(DATA / "cifar10-jpg"), "test_data": str(DATA / "cifar10-jpg" / "test"), "val_per_class": 100,
            "split_seed": 0, "batch_size": 50, "lr": 0.05, "weight_decay": 5e-4, "pad": 0, "image_size": 16}
    return {
        "C1 WRN-10-4 16px 50/cl no-aug 30ep": {**base, "depth": 10, "width": 4, "train_per_class": 50, "flip": False, "epochs": 30},
        "C2 WRN-10-4 16px 50/cl flip 30ep": {**base, "depth": 10, "width": 4, "train_per_class": 50, "flip": True, "epochs": 30},
        "C3 WRN-10-4 16px 100/cl no-aug 20ep": {**base, "depth": 10, "width": 4, "train_per_class": 100, "flip": False, "epochs": 20},
        "C4 WRN-16-4 16px 50/cl no-aug 30ep": {**base, "depth": 16, "width": 4, "train_per_class": 50, "flip": False, "epochs": 30},
    }


def lm_protocols() -> dict[str, dict[str, Any]]:
    base = {"data": str(DATA / "wikitext-2"), "protocol": "mini", "max_vocab": 2000, "curve_points": 4}
    return {
        "L1 d128 60k tok V2k 10ep": {**base, "train_tokens": 60000, "d_model": 128, "d_ff": 512, "epochs": 10},
        "L2 d128 30k tok V2k 16ep": {**base, "train_tokens": 30000, "d_model": 128, "d_ff": 512, "epochs": 16},
        "L3 d256 60k tok V2k 8ep": {**base, "train_tokens": 60000, "d_model": 256, "d_ff": 1024, "epochs": 8},
    }


REGS = {
    "cifar": {"none": None, "dropout 0.3": {"kind": "dropout", "drop_prob": 0.3},
              "spatial 0.2": {"kind": "spatial", "drop_prob": 0.2},
              "dropblock 0.2 b3": {"kind": "dropblock", "drop_prob": 0.2, "block_size": 3}},
    "lm": {"none": None, "dropout 0.2": {"kind": "dropout", "drop_prob": 0.2},
           "dropout 0.4": {"kind": "dropout", "drop_prob": 0.4},
           "variational 0.3": {"kind": "variational", "drop_prob": 0.3}},
}
TASK = {"cifar": "cifar10", "lm": "wikitext2"}
KEYS = {"cifar": ("val_acc", "test_acc", "train_loss"), "lm": ("val_ppl", "test_ppl", "train_loss")}


def record(row: dict[str, Any]) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(OUT) + ".lock"):  # the two sections run in parallel processes
        rows = json.loads(OUT.read_text()) if OUT.is_file() else []
        rows.append(row)
        OUT.write_text(json.dumps(rows, indent=1) + "\n")


def render(rows: list[dict[str, Any]], section: str) -> str:
    """The scan of ``section`` as a markdown table, protocols in run order."""
    val, test, _ = KEYS[section]
    out = [f"| protocol | regularizer | {val} | {test} | train loss | s / child |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in (r for r in rows if r["section"] == section):
        out.append(f"| {r['protocol']} | {r['regularizer']} | {r[val]:.4g} | {r[test]:.4g} | {r['train_loss']:.3g} | {r['seconds']:.0f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--section", choices=["cifar", "lm"], required=True)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--only", default=None, help="run only protocols whose label starts with this")
    ap.add_argument("--render", action="store_true", help="print the scan so far as a markdown table and exit")
    args = ap.parse_args()
    if args.render:
        print(render(json.loads(OUT.read_text()) if OUT.is_file() else [], args.section))
        return
    torch.set_num_threads(1)
    task = get_task(TASK[args.section])
    protocols = cifar_protocols() if args.section == "cifar" else lm_protocols()
    for label, cfg in protocols.items():
        if args.only and not label.startswith(args.only):
            continue
        config = task.config_from_dict(cfg)
        for reg_label, reg in REGS[args.section].items():
            for seed in range(args.seeds):
                res = task.run_child(config, reg, None, "cpu", seed)
                row = {"section": args.section, "protocol": label, "config": config.to_dict(), "regularizer": reg_label,
                       "seed": seed, "seconds": res.seconds, **{k: res.metrics.get(k) for k in KEYS[args.section]},
                       "curve": res.curve, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       "command": " ".join(["benchmarks/regime_study.py", *sys.argv[1:]])}
                record(row)
                print(f"{label} | {reg_label} | seed {seed}: " + ", ".join(f"{k}={res.metrics.get(k, float('nan')):.4g}" for k in KEYS[args.section]) + f" ({res.seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
