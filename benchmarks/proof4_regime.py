#!/usr/bin/env python3
"""Proof round 4, step 1: the regime, measured fairly (issue 21 §1; the translation
protocols are §3's transfer target).

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

LM protocols (**ours**), task ``wikitext2``, WikiText-2 mini (train on the first
``train_tokens`` of test.txt, validate on the first half of valid.txt, test on its second
half, 114k tokens), vocabulary the 2,000 most frequent training words, the task's Pre-LN
Transformer LM, AdamW, 50 warm-up steps then cosine to 10% of lr, batch 16 x 64 tokens.
Validated at every epoch end (``curve_points`` = epochs - 1) on 51,200 validation tokens
(``max_eval_tokens``; the evaluation windows run across all 16 rows of the batchified split,
so these tokens are spread over the whole split, not its first lines); the kept weights are
tested on the whole test half. Round 3's L2 was d=128, 2 layers, 30k tokens, 16 epochs.

- ``L30k-d256x4``: 30k training tokens, d=256 (FFN 1024), 4 layers, lr 2e-3, 16 epochs:
  more parameters on the same data (round 3's L3 row, which never ran, at L2's data).
- ``L30k-d128-e32``: L2's model (d=128, FFN 512, 2 layers) with twice its epochs (32) and
  twice its lr (4e-3).
- ``L15k-d256x4``: the L30k-d256x4 model on half the data (15k tokens), 24 epochs:
  science.md's lever (over-parameterise on little data) one step further; its probe found a
  tie at 30k tokens and d=256 and none ahead at every smaller ratio of parameters to tokens.

LM regularizers: none, Dropout 0.1/0.2/0.3, variational 0.1/0.3 (the seq grid of
``adsearch/daemon/enqueue.py``, ``GRID["seq"]``), as baseline specs at the model's sites.
LM criterion (issue 21 §1): the regularizer picked on validation (the lowest mean, over
paired seeds, of ``val_ppl(reg) / val_ppl(none) - 1``) has test perplexity at least 5% lower
than none's: the mean over paired seeds of the **relative** difference
``test_ppl(pick) / test_ppl(none) - 1`` is at most -0.05, its 95% t interval is below 0, and
there are at least 5 paired seeds.

Translation protocols (**ours**; the §3 transfer target), task ``translation``, Multi30k
En-Fr: the first 4,000 training pairs, BLEU (sacrebleu, tokenized, lowercased, greedy
decoding) on the first 500 pairs of ``val`` (selection) and of ``test_2016_flickr``
(report), the task's encoder-decoder Transformer, AdamW lr 1e-3, 200 warm-up steps then
cosine, batch 64 (63 steps an epoch), label smoothing 0.1, validated every epoch. Round 3's
protocol (the same with 6 epochs, 378 steps) under-fits: every Dropout rate lost to none.

- ``T4k-e24``: 24 epochs (1,512 steps, 4x round 3's);
- ``T4k-e60``: 60 epochs (3,780 steps, 10x round 3's);
- ``T4k-d256-e16``: a larger model, d=256 (FFN 1024; 2 encoder and 2 decoder layers, as
  the others), 16 epochs (1,008 steps).

Translation regularizers: none, Dropout 0.1/0.2/0.3. Transfer-target criterion: the Dropout
rate picked on validation (the best mean paired validation-BLEU difference against none)
beats none on **validation** BLEU: the 95% t interval of the paired difference (absolute,
BLEU points) is above 0, over at least 5 paired seeds. The pick and this check read the same
runs, so the gap is optimistic by the winner's curse over three rates; the paired test-BLEU
difference is reported beside it.

A child whose training loss went non-finite (LM and translation) has no validation or test
metric: its row keeps ``None``, the summary leaves it out of its regularizer's pairs and
counts it (``diverged``), and a regularizer that diverged on any seed is not a candidate
for the pick. A seed on which none diverged pairs with nothing (the conservative side).

Cost, measured 2026-12-03 in CPU seconds of one thread (``time.process_time``) under
``nice -n 19`` while both cores ran other work (wall time then ran ~60x the CPU time; on a
free pinned core a child's wall time is about its CPU time; the C32 scan's children took
~1.5x its probe's estimate, so plan with a margin). "timing": ``--timing``, a child at 1 and
at 2 epochs with Dropout 0.2, the difference one epoch (training + validation), the rest
data loading, set-up and the test pass. "parts": a training epoch, a validation pass and
the test pass timed apart and added up, cross-checked where a 1-epoch child finished (the
contended machine left no time for the whole ``--timing`` on these). Translation's
validation is greedy decoding of 500 sentences, 4-5.5 s at d=128 and 11-15 s at d=256; its
training 0.214 s a step at d=128 and 0.438 s at d=256, 63 steps an epoch:

| protocol | s / child | one epoch (train + validation) | how |
| --- | ---: | ---: | --- |
| L30k-d256x4 | 165-265 | 9-16 | parts; its 1-epoch child took 23.3 |
| L30k-d128-e32 | 91 | 2.7 | timing (0.8 data + 4.0 fixed + 32 x 2.7) |
| L15k-d256x4 | 140-250 | 5.5-10 | parts |
| T4k-e24 | 440-470 | 18-19 | parts |
| T4k-e60 | 1,100-1,150 | 18-19 | parts; its probe's children took 890-1,100 |
| T4k-d256-e16 | 650-700 | 39-43 | parts; its probe's children took 710-730 |

A one-seed ``--probe`` is 6 LM children (10-30 min on one core) or 4 translation children
(T4k-e24 ~30 min, T4k-d256-e16 ~45 min, T4k-e60 ~75 min); a 5-seed scan five times that.
The translation ranges lean high: early epochs decode to the length cap, a trained model
stops sooner. CPU time itself moved by up to ~1.5x with the load (the same d=128 LM epoch
measured 2.7 s in ``--timing`` and 3.8 s in parts), so before planning a scan run
``--timing`` on the free pinned core (a minute or two a protocol) and trust that. Probe
T4k-e24 first: T4k-e60 is only needed if every rate still loses there.

Resumable: rows go to ``benchmarks/results/proof4/regime.json`` (``--out`` names another file)
as each child ends, and a rerun skips every (protocol, regularizer, seed) already there.
Seeds are the outer loop, so a cut-short scan is paired over the seeds it finished. LM and
translation rows also hold their protocol's config (and their CPU seconds); a rerun refuses
to mix rows of an edited protocol with new ones.

Usage (``--probe``: seed 0 of none and each regularizer, the cheap first look science.md
recommends, into the same rows file, then that protocol's table; the 5-seed scan then reuses
seed 0)::

    taskset -c 1 .venv/bin/python benchmarks/proof4_regime.py --protocol C32 --seeds 5
    taskset -c 1 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/proof4_regime.py \\
        --protocol L30k-d256x4 --probe
    taskset -c 1 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/proof4_regime.py \\
        --protocol L30k-d256x4 --seeds 5
    taskset -c 1 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/proof4_regime.py \\
        --protocol T4k-e24 --probe
    taskset -c 1 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/proof4_regime.py \\
        --protocol L30k-d256x4 --timing                  # the cost table above
    .venv/bin/python benchmarks/proof4_regime.py --render        # tables and the criterion

``--render`` prints every protocol's table (CIFAR in accuracy, LM in perplexity, translation
in BLEU) and writes ``regime_summary.json`` beside the rows file (``<rows stem>_summary.json``),
one object per protocol with the keys of the C32 entry (protocol, config, table, pick,
test_gap, met, vs_none); LM and translation entries add ``gap`` (what the differences
measure) and translation entries ``val_gap`` and ``val_vs_none``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
OUT = REPO / "benchmarks" / "results" / "proof4" / "regime.json"

BASE = {"data": str(DATA / "cifar10-jpg"), "test_data": str(DATA / "cifar10-jpg" / "test"),
        "image_size": 32, "train_per_class": 100, "val_per_class": 200, "split_seed": 0,
        "depth": 10, "width": 2, "epochs": 40, "batch_size": 50, "lr": 0.05,
        "weight_decay": 5e-4, "pad": 0, "flip": False, "keep_best": True}
#: LM protocols: validated at every epoch end (curve_points = epochs - 1), see the module doc
LM_BASE: dict[str, Any] = {"data": str(DATA / "wikitext-2"), "protocol": "mini",
                           "max_vocab": 2000, "train_tokens": 30000, "max_eval_tokens": 51200,
                           "keep_best": True}
LM_BIG = {**LM_BASE, "d_model": 256, "d_ff": 1024, "n_layers": 4, "lr": 2e-3}
MT_BASE: dict[str, Any] = {"data": str(DATA / "multi30k-en-fr"), "train_limit": 4000,
                           "eval_limit": 500, "keep_best": True}
PROTOCOLS: dict[str, dict[str, Any]] = {
    "C32": BASE, "C32w": {**BASE, "width": 4},
    "L30k-d256x4": {**LM_BIG, "epochs": 16, "curve_points": 15},
    "L30k-d128-e32": {**LM_BASE, "d_model": 128, "d_ff": 512, "n_layers": 2, "lr": 4e-3,
                      "epochs": 32, "curve_points": 31},
    "L15k-d256x4": {**LM_BIG, "train_tokens": 15000, "epochs": 24, "curve_points": 23},
    "T4k-e24": {**MT_BASE, "epochs": 24},
    "T4k-e60": {**MT_BASE, "epochs": 60},
    "T4k-d256-e16": {**MT_BASE, "d_model": 256, "d_ff": 1024, "epochs": 16},
}

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
#: the LM grid (adsearch/daemon/enqueue.py GRID["seq"]) and the translation grid
SEQ_REGS: dict[str, dict[str, Any] | None] = {
    "none": None,
    "dropout 0.1": {"kind": "dropout", "drop_prob": 0.1},
    "dropout 0.2": {"kind": "dropout", "drop_prob": 0.2},
    "dropout 0.3": {"kind": "dropout", "drop_prob": 0.3},
    "variational 0.1": {"kind": "variational", "drop_prob": 0.1},
    "variational 0.3": {"kind": "variational", "drop_prob": 0.3},
}
MT_REGS = {k: v for k, v in SEQ_REGS.items() if not k.startswith("variational")}
PPL_TARGET = -0.05  # relative test perplexity (pick / none - 1) the pick must reach or beat


class Family(NamedTuple):
    """How a protocol's children run and are judged: the adsearch task, the validation
    metric (selection) and the test metric (report), the metrics a row keeps, the grid."""

    task: str
    val: str
    test: str
    keys: tuple[str, ...]
    regs: dict[str, dict[str, Any] | None]


FAMILIES = {
    "acc": Family("cifar10", "val_acc", "test_acc", (), REGS),
    "ppl": Family("wikitext2", "val_ppl", "test_ppl",
                  ("val_ppl", "val_loss", "test_ppl", "test_loss", "train_loss", "best_epoch",
                   "steps", "params", "diverged"), SEQ_REGS),
    "bleu": Family("translation", "val_bleu", "test_bleu",
                   ("val_bleu", "val_loss", "test_bleu", "test_loss", "train_loss",
                    "best_epoch", "steps", "params", "diverged"), MT_REGS),
}


def family(protocol: str) -> Family:
    """The family of ``protocol`` by its name: C... CIFAR, L... LM, T... translation."""
    return FAMILIES[{"C": "acc", "L": "ppl", "T": "bleu"}[protocol[0]]]


def load_rows(path: Path = OUT) -> list[dict[str, Any]]:
    return json.loads(path.read_text()) if path.is_file() else []


def record(row: dict[str, Any], path: Path = OUT) -> None:
    """Append one child's row, atomically (write a temp file, then rename), under a file
    lock: two probes of different protocols may share the rows file, one core each."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        rows = load_rows(path) + [row]
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(rows, indent=1) + "\n")
        tmp.replace(path)


def summary(rows: list[dict[str, Any]], protocol: str) -> dict[str, Any]:
    """Per regularizer: mean validation/test and best epoch; the validation pick; its paired
    test difference against none with the 95% t interval; whether the criterion is met."""
    if protocol[0] != "C":
        return seq_summary(rows, protocol)
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


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def seq_summary(rows: list[dict[str, Any]], protocol: str) -> dict[str, Any]:
    """:func:`summary` of an LM (perplexity, relative differences, lower is better) or a
    translation protocol (BLEU points, higher is better; the criterion on validation)."""
    from adsearch.verify.stats import paired_diff

    fam = family(protocol)
    by: dict[str, dict[int, dict[str, Any]]] = {}
    diverged: dict[str, int] = {}
    for r in rows:
        if r["protocol"] != protocol:
            continue
        s = by.setdefault(r["regularizer"], {})
        if r.get(fam.val) is None or r.get(fam.test) is None:  # diverged: no metric
            diverged[r["regularizer"]] = diverged.get(r["regularizer"], 0) + 1
        else:
            s[r["seed"]] = r
    table: dict[str, dict[str, Any]] = {}
    for reg, s in by.items():
        rs = list(s.values())
        table[reg] = {"n": len(rs), fam.val: _mean([v[fam.val] for v in rs]),
                      fam.test: _mean([v[fam.test] for v in rs]),
                      "best_epoch": statistics.median(v["best_epoch"] for v in rs) if rs
                      else math.nan,
                      "seconds": statistics.median(v["seconds"] for v in rs) if rs else math.nan}
        if reg in diverged:
            table[reg]["diverged"] = diverged[reg]
    out: dict[str, Any] = {"protocol": protocol, "config": PROTOCOLS[protocol], "table": table}
    none = by.get("none", {})
    cands = [reg for reg in by if reg != "none" and reg not in diverged
             and set(by[reg]) & set(none)]
    if not cands:
        return out

    def diff(reg: str, key: str) -> Any:
        """Paired differences of ``key``, reg against none: relative (reg / none - 1) for
        perplexity, absolute (reg - none) for BLEU."""
        if fam.val == "val_ppl":
            rel = {s: v[key] / none[s][key] - 1.0 for s, v in by[reg].items() if s in none}
            return paired_diff(rel, {s: 0.0 for s in rel})
        return paired_diff({s: v[key] for s, v in by[reg].items()},
                           {s: v[key] for s, v in none.items()})

    if fam.val == "val_ppl":  # pick on validation: the lowest relative perplexity
        pick = min(cands, key=lambda reg: diff(reg, fam.val).mean)
        d = diff(pick, fam.test)
        out.update(pick=pick, test_gap=d.to_dict(),
                   met=bool(d.n >= 5 and d.hi < 0 and d.mean <= PPL_TARGET),
                   gap="relative: test_ppl(reg) / test_ppl(none) - 1 per paired seed, "
                       "mean and 95% t interval (negative: lower perplexity than none)")
    else:  # pick on validation: the highest BLEU; the target is a validation gap
        pick = max(cands, key=lambda reg: diff(reg, fam.val).mean)
        v = diff(pick, fam.val)
        out.update(pick=pick, test_gap=diff(pick, fam.test).to_dict(), val_gap=v.to_dict(),
                   met=bool(v.n >= 5 and v.lo > 0),
                   gap="absolute: BLEU(reg) - BLEU(none) in BLEU points per paired seed, "
                       "mean and 95% t interval; met: the validation gap's interval above 0")
        out["val_vs_none"] = {reg: diff(reg, fam.val).to_dict() for reg in cands}
    out["vs_none"] = {reg: diff(reg, fam.test).to_dict() for reg in cands}
    return out


def _ci(d: dict[str, Any] | None, scale: float, unit: str = "") -> str:
    """``+1.23 [+0.45, +2.01]`` (``scale`` times the fraction), or empty under 2 seeds."""
    if not d or d["n"] < 2:
        return ""
    return (f"{scale * d['mean']:+.2f}{unit} [{scale * d['lo']:+.2f}, "
            f"{scale * d['hi']:+.2f}]")


def seq_render(s: dict[str, Any]) -> list[str]:
    """The markdown table and verdict of an LM or translation protocol's summary."""
    ppl = s["protocol"][0] == "L"
    val, test = ("val_ppl", "test_ppl") if ppl else ("val_bleu", "test_bleu")
    if ppl:
        lines = [f"### {s['protocol']}", "", "Perplexity, lower is better; \"vs none\" is the "
                 "relative test difference (reg / none - 1) per paired seed, in %.", "",
                 "| regularizer | seeds | val ppl | test ppl | test vs none, % (95% CI) | "
                 "best epoch | s / child |", "| --- | ---: | ---: | ---: | --- | ---: | ---: |"]
    else:
        lines = [f"### {s['protocol']}", "", "BLEU (0-100), higher is better; \"vs none\" is "
                 "the paired difference in BLEU points.", "",
                 "| regularizer | seeds | val BLEU | test BLEU | val vs none (95% CI) | "
                 "test vs none (95% CI) | best epoch | s / child |",
                 "| --- | ---: | ---: | ---: | --- | --- | ---: | ---: |"]
    for reg, t in s["table"].items():
        n = f"{t['n']}" + (f" (+{t['diverged']} diverged)" if t.get("diverged") else "")
        cis = ([_ci(s.get("vs_none", {}).get(reg), 100.0)] if ppl else
               [_ci(s.get("val_vs_none", {}).get(reg), 1.0),
                _ci(s.get("vs_none", {}).get(reg), 1.0)])
        lines.append(f"| {reg} | {n} | {t[val]:.2f} | {t[test]:.2f} | {' | '.join(cis)} | "
                     f"{t['best_epoch']:.0f} | {t['seconds']:.0f} |")
    if "pick" in s:
        g = s["test_gap"]
        verdict = "met" if s["met"] else "not met"
        if ppl:
            lines += ["", f"Picked on validation: **{s['pick']}**; test perplexity vs none "
                      f"{100 * g['mean']:+.2f}% (relative), 95% CI [{100 * g['lo']:+.2f}, "
                      f"{100 * g['hi']:+.2f}] over {g['n']} paired seeds; criterion (<= -5%, "
                      f"CI below 0, >= 5 seeds) {verdict}."]
        else:
            v = s["val_gap"]
            lines += ["", f"Picked on validation: **{s['pick']}**; validation BLEU over none "
                      f"{v['mean']:+.2f}, 95% CI [{v['lo']:+.2f}, {v['hi']:+.2f}] over "
                      f"{v['n']} paired seeds (test: {g['mean']:+.2f} [{g['lo']:+.2f}, "
                      f"{g['hi']:+.2f}]); transfer-target criterion (validation CI above 0, "
                      f">= 5 seeds) {verdict}."]
    lines.append("")
    return lines


def render(rows: list[dict[str, Any]], protocols: list[str] | None = None) -> str:
    lines = []
    for protocol in protocols or PROTOCOLS:
        s = summary(rows, protocol)
        if not s["table"]:
            continue
        if protocol[0] != "C":
            lines += seq_render(s)
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


def at_epochs(config: dict[str, Any], epochs: int) -> dict[str, Any]:
    """``config`` shortened to ``epochs``, still validated at every epoch end."""
    out = {**config, "epochs": epochs}
    if "curve_points" in config:
        out["curve_points"] = epochs - 1
    return out


def timing(protocol: str) -> None:
    """Print the estimated CPU seconds of one full child of ``protocol`` (module doc)."""
    import torch

    from adsearch.tasks import get_task

    torch.set_num_threads(1)
    fam = family(protocol)
    task = get_task(fam.task)
    cfg = PROTOCOLS[protocol]
    t0 = time.process_time()
    task.load(task.config_from_dict(cfg))  # cached for the two children below
    load = time.process_time() - t0
    cpu = {}
    for e in (1, 2):
        t0 = time.process_time()
        res = task.run_child(task.config_from_dict(at_epochs(cfg, e)), fam.regs["dropout 0.2"],
                             None, "cpu", 0)
        cpu[e] = time.process_time() - t0
        print(f"{protocol} | dropout 0.2 | {e} epoch(s): {cpu[e]:.1f} CPU s, "
              f"{res.seconds:.1f} wall s, {res.metrics.get('steps', 0):.0f} steps", flush=True)
    epoch = cpu[2] - cpu[1]
    est = load + (cpu[1] - epoch) + cfg["epochs"] * epoch
    print(f"{protocol}: data {load:.1f} s + fixed {cpu[1] - epoch:.1f} s + {cfg['epochs']} "
          f"epochs x {epoch:.1f} s = about {est:.0f} CPU s a child", flush=True)


def scan(protocol: str, seeds: int, regs: list[str], out: Path) -> None:
    """Run the missing (regularizer, seed) children of ``protocol``, seeds the outer loop,
    each row recorded as it ends."""
    import torch

    from adsearch.tasks import get_task

    torch.set_num_threads(1)
    fam = family(protocol)
    task = get_task(fam.task)
    config = task.config_from_dict(PROTOCOLS[protocol])
    for seed in range(seeds):
        for label in regs:
            if any(r["protocol"] == protocol and r["regularizer"] == label
                   and r["seed"] == seed for r in load_rows(out)):
                continue
            cpu = time.process_time()
            res = task.run_child(config, fam.regs[label], None, "cpu", seed)
            cpu = time.process_time() - cpu
            stamp = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "command": " ".join(["benchmarks/proof4_regime.py", *sys.argv[1:]])}
            curve = [{k: round(v, 5) for k, v in p.items()} for p in res.curve]
            if protocol[0] == "C":
                keys = ("val_acc", "val_loss", "test_acc", "test_loss", "train_loss",
                        "best_epoch")
                record({"protocol": protocol, "regularizer": label, "seed": seed,
                        "seconds": res.seconds, **{k: res.metrics.get(k) for k in keys},
                        "curve": curve, **stamp}, out)
                print(f"{protocol} | {label} | seed {seed}: val {res.metrics['val_acc']:.4f} "
                      f"test {res.metrics['test_acc']:.4f} best epoch "
                      f"{res.metrics['best_epoch']:.0f} ({res.seconds:.0f} s)", flush=True)
                continue
            record({"protocol": protocol, "task": fam.task, "regularizer": label, "seed": seed,
                    "seconds": res.seconds, "cpu_seconds": cpu,
                    **{k: res.metrics.get(k) for k in fam.keys}, "curve": curve,
                    "config": PROTOCOLS[protocol], **stamp}, out)
            m = res.metrics
            got = (f"val {m[fam.val]:.2f} test {m[fam.test]:.2f} best epoch "
                   f"{m['best_epoch']:.1f}" if m.get(fam.test) is not None else
                   f"diverged at step {m.get('diverged_step', math.nan):.0f}")
            print(f"{protocol} | {label} | seed {seed}: {got} ({res.seconds:.0f} s, "
                  f"{cpu:.0f} CPU s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", choices=list(PROTOCOLS), default="C32")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--regs", default=None, help="comma list of regularizer labels (default all)")
    ap.add_argument("--probe", action="store_true",
                    help="seed 0 only (none and each regularizer), then the protocol's table")
    ap.add_argument("--timing", action="store_true",
                    help="estimate one full child's CPU seconds from 1- and 2-epoch children "
                         "(records nothing)")
    ap.add_argument("--render", action="store_true", help="print the tables and exit")
    ap.add_argument("--out", type=Path, default=OUT,
                    help="the rows file (default %(default)s); --render writes "
                         "<its stem>_summary.json beside it")
    args = ap.parse_args()
    if args.render:
        rows = load_rows(args.out)
        print(render(rows))
        args.out.with_name(f"{args.out.stem}_summary.json").write_text(json.dumps(
            [summary(rows, p) for p in PROTOCOLS], indent=1) + "\n")
        return
    if args.timing:
        timing(args.protocol)
        return
    grid = family(args.protocol).regs
    regs = args.regs.split(",") if args.regs else list(grid)
    unknown = [r for r in regs if r not in grid]
    if unknown:
        sys.exit(f"unknown regularizer {unknown}: use labels of {list(grid)}")
    stale = [r for r in load_rows(args.out) if r["protocol"] == args.protocol
             and "config" in r and r["config"] != PROTOCOLS[args.protocol]]
    if stale:
        sys.exit(f"{args.out} holds {len(stale)} row(s) of protocol {args.protocol} with "
                 "another config (the protocol was edited since): give the edited protocol a "
                 "new name, or pass --out NEW.json")
    scan(args.protocol, 1 if args.probe else args.seeds, regs, args.out)
    if args.probe:
        print(render(load_rows(args.out), [args.protocol]))


if __name__ == "__main__":
    main()
