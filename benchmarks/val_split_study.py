#!/usr/bin/env python3
"""Can the CIFAR validation split rank regularizers? (issue 19 §3, last bullet)

The round-3 audit found that, on CIFAR's verified regularizers x 5 seeds, the within-seed
Spearman of validation *accuracy* on 1,000 images against test accuracy averaged 0.01, and
that of validation *loss* 0.68. This study measures it again, with a validation pool large
enough to draw many splits of each size from, and chooses the image task's defaults from it.

Design (**ours**):

1. **Train once.** R regularizers x S seeds, each trained once on the round-3 CIFAR protocol
   (C1 of benchmarks/regime_study.py, the protocol of the audited verify run: WRN-10-4 at
   16 px, 50 training images a class from ``cifar10-jpg/train``, no augmentation, 30 epochs,
   batch 50, SGD-Nesterov lr 0.05 cosine, wd 5e-4). Training is the task's own
   ``run_child``; only its evaluation is extended, to keep per-example outputs.
2. **Evaluate every model** at the end of training on a held-out validation pool of
   ``--pool-per-class`` images a class from ``cifar10-jpg/train`` (disjoint from training:
   both are drawn by one class-balanced split) and on the whole test folder (5,000 images),
   keeping per-example correctness and cross-entropy (nats).
3. **Offline**, for validation sizes 1,000 / 2,000 / 5,000 it draws ``--subsets`` random
   class-balanced subsets of the pool (one subset is the split of a search: the same images
   score every regularizer). For each subset and seed it computes the Spearman correlation,
   across regularizers, of validation accuracy and of validation loss (negated, so that
   higher is better for both) against test accuracy and against test loss; the within-seed
   values are averaged over seeds, and the table gives their mean and spread over subsets.
   A ceiling: the same statistic between the two halves of the test folder (2,500 each).

Resumable: each run writes ``per_run/<reg>__s<seed>.npz`` (per-example arrays) and then
``.json`` (its metrics) atomically as it finishes; a rerun skips runs whose JSON exists.

Usage::

    taskset -c 1 .venv/bin/python benchmarks/val_split_study.py            # train + analyse
    .venv/bin/python benchmarks/val_split_study.py --analyse-only            # tables only

Results: ``benchmarks/results/val_split/`` (``summary.json`` and the per-run files).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
OUT = REPO / "benchmarks" / "results" / "val_split"

#: regularizer label -> spec (the baselines grid's kinds at the audit's tuned settings)
REGS: dict[str, dict[str, Any] | None] = {
    "none": None,
    "dropout 0.2": {"kind": "dropout", "drop_prob": 0.2},
    "spatial 0.1": {"kind": "spatial", "drop_prob": 0.1},
    "dropblock 0.1 b3": {"kind": "dropblock", "drop_prob": 0.1, "block_size": 3},
    "dropblock 0.2 b3": {"kind": "dropblock", "drop_prob": 0.2, "block_size": 3},
    "spatial 0.2": {"kind": "spatial", "drop_prob": 0.2},
}
SIZES = (1000, 2000, 5000)
SLICES = ("val_acc", "val_loss")
TARGETS = ("test_acc", "test_loss", "rest_acc")


def protocol(pool_per_class: int) -> dict[str, Any]:
    """The C1 task config, with the validation pool as the task's validation split."""
    return {"data": str(DATA / "cifar10-jpg"), "test_data": str(DATA / "cifar10-jpg" / "test"),
            "train_per_class": 50, "val_per_class": pool_per_class, "split_seed": 0,
            "image_size": 16, "depth": 10, "width": 4, "epochs": 30, "batch_size": 50,
            "lr": 0.05, "weight_decay": 5e-4, "pad": 0, "flip": False, "eval_every": 30}


def run_name(label: str, seed: int) -> str:
    return f"{label.replace(' ', '_')}__s{seed}"


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- training
def train_all(seeds: int, pool_per_class: int, epochs: float) -> None:
    """Train every (regularizer, seed) not yet on disk, seed-major (a cut-short study still
    has whole seeds), and write each one's per-example outputs as it ends."""
    import io

    import torch
    import torch.nn.functional as F

    from adsearch.tasks import common
    from adsearch.tasks.image import Cifar10Task
    from adsearch.tasks.image_data import normalize

    class KeepingTask(Cifar10Task):
        """The cifar10 task; its evaluation also keeps per-example outputs of the last call
        on each data set (keyed by the set's id)."""

        def __init__(self) -> None:
            self.kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}

        @torch.no_grad()
        def evaluate(self, model: Any, data: Any, c: Any, device: Any) -> tuple[float, float]:
            model.eval()
            correct, losses = [], []
            for i in range(0, len(data), c.eval_batch_size):
                x = normalize(data.x[i : i + c.eval_batch_size].to(device), self.mean, self.std)
                y = data.y[i : i + c.eval_batch_size].to(device)
                with common.autocast(device):
                    logits = model(x).float()
                losses.append(F.cross_entropy(logits, y, reduction="none").cpu().numpy())
                correct.append((logits.argmax(1) == y).cpu().numpy())
            model.train()
            ok, loss = np.concatenate(correct), np.concatenate(losses).astype(np.float32)
            self.kept[id(data)] = (ok, loss)
            return float(ok.mean()), float(loss.astype(np.float64).mean())

    torch.set_num_threads(1)
    task = KeepingTask()
    config = task.config_from_dict({**protocol(pool_per_class), "epochs": epochs,
                                     "eval_every": max(1, int(epochs))})
    runs = OUT / "per_run"
    runs.mkdir(parents=True, exist_ok=True)
    _, val, test = task.load(config)
    assert test is not None
    for seed in range(seeds):
        for label, spec in REGS.items():
            name = run_name(label, seed)
            if (runs / f"{name}.json").is_file():
                print(f"{name}: done before, skipped", flush=True)
                continue
            task.kept.clear()
            t0 = time.time()
            res = task.run_child(config, spec, None, "cpu", seed)
            (vok, vloss), (tok, tloss) = task.kept[id(val)], task.kept[id(test)]
            buf = io.BytesIO()
            np.savez_compressed(buf, val_y=val.y.numpy().astype(np.int8), val_correct=vok,
                                val_loss=vloss, test_y=test.y.numpy().astype(np.int8),
                                test_correct=tok, test_loss=tloss)
            atomic_write(runs / f"{name}.npz", buf.getvalue())
            row = {"regularizer": label, "spec": spec, "seed": seed,
                   "train_seconds": res.seconds, "wall_seconds": time.time() - t0,
                   "metrics": res.metrics, "config": config.to_dict(),
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "command": " ".join(["benchmarks/val_split_study.py", *sys.argv[1:]])}
            atomic_write(runs / f"{name}.json", (json.dumps(row, indent=1) + "\n").encode())
            m = res.metrics
            print(f"{name}: val_acc={m['val_acc']:.4f} val_loss={m['val_loss']:.4f} "
                  f"test_acc={m['test_acc']:.4f} test_loss={m['test_loss']:.4f} "
                  f"({time.time() - t0:.0f} s)", flush=True)


# ----------------------------------------------------------------------------- analysis
def ranks(a: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank) along the last axis of ``a``."""
    order = np.argsort(a, axis=-1, kind="stable")
    s = np.take_along_axis(a, order, axis=-1)
    r = np.empty_like(a, dtype=np.float64)
    flat_s, flat_o, flat_r = (x.reshape(-1, a.shape[-1]) for x in (s, order, r))
    for k in range(flat_s.shape[0]):
        row, i = flat_s[k], 0
        while i < row.size:
            j = i
            while j + 1 < row.size and row[j + 1] == row[i]:
                j += 1
            flat_r[k, flat_o[k, i : j + 1]] = (i + j) / 2.0
            i = j + 1
    return flat_r.reshape(a.shape)


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho along the last axis (average ranks for ties; NaN if one side is
    constant, e.g. every regularizer at the same validation accuracy)."""
    ra, rb = ranks(a), ranks(b)
    ra = ra - ra.mean(-1, keepdims=True)
    rb = rb - rb.mean(-1, keepdims=True)
    den = np.sqrt((ra**2).sum(-1) * (rb**2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def load_runs() -> tuple[list[str], list[int], dict[tuple[str, int], dict[str, np.ndarray]]]:
    """Regularizers and seeds with a complete set of runs (a seed counts only when every
    regularizer finished on it: the statistic is within-seed)."""
    runs = OUT / "per_run"
    got: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    for js in sorted(runs.glob("*.json")):
        row = json.loads(js.read_text())
        with np.load(js.with_suffix(".npz")) as z:
            got[(row["regularizer"], int(row["seed"]))] = {k: z[k] for k in z.files}
    labels = [r for r in REGS if any(k[0] == r for k in got)]
    seeds = sorted({s for _, s in got if all((r, s) in got for r in labels)})
    return labels, seeds, got


def analyse(subsets: int, rng_seed: int = 0) -> dict[str, Any]:
    """The table: per validation size, mean and spread over subsets of the seed-averaged
    within-seed Spearman of each validation statistic against each test statistic."""
    labels, seeds, got = load_runs()
    if len(seeds) == 0 or len(labels) < 3:
        raise SystemExit(f"not enough finished runs in {OUT / 'per_run'} (need >= 3 regularizers "
                         "on at least one seed)")
    first = got[(labels[0], seeds[0])]
    y, ty = first["val_y"].astype(np.int64), first["test_y"].astype(np.int64)
    classes = np.unique(y)
    pool = int(np.bincount(y).min())
    # (seed, reg, example) arrays
    vc = np.stack([[got[(r, s)]["val_correct"] for r in labels] for s in seeds]).astype(float)
    vl = np.stack([[got[(r, s)]["val_loss"] for r in labels] for s in seeds]).astype(float)
    tc = np.stack([[got[(r, s)]["test_correct"] for r in labels] for s in seeds]).astype(float)
    tl = np.stack([[got[(r, s)]["test_loss"] for r in labels] for s in seeds]).astype(float)
    target = {"test_acc": tc.mean(-1), "test_loss": -tl.mean(-1)}  # (seed, reg), higher better
    # all held-out images a model saw at the end: test + the pool outside a subset
    held_sum, held_n = tc.sum(-1) + vc.sum(-1), ty.size + y.size
    rng = np.random.default_rng(rng_seed)
    by_class = [np.flatnonzero(y == c) for c in classes]
    # noise: two models scored on the same n images differ by a paired proportion whose
    # standard error is about sqrt(d / n), d = the share of images exactly one gets right
    pairs = [(i, j) for i in range(len(labels)) for j in range(i + 1, len(labels))]
    discord = float(np.mean([np.mean(vc[:, i] != vc[:, j]) for i, j in pairs]))
    # signal: the accuracy gaps between regularizers on all 15,000 held-out images
    held = np.sort(held_sum / held_n, axis=1)  # (seed, reg) ascending
    signal = {"adjacent_gap_mean": float(np.diff(held, axis=1).mean()),
              "range_mean": float((held[:, -1] - held[:, 0]).mean()),
              "discordant_share": discord}
    table: dict[str, Any] = {}
    for size in SIZES:
        per = size // len(classes)
        if per > pool:
            continue
        draws = 1 if per == pool else subsets
        rho: dict[str, list[float]] = {f"{v} vs {t}": [] for v in SLICES for t in TARGETS}
        for _ in range(draws):
            idx = np.concatenate([rng.choice(ix, per, replace=False) for ix in by_class])
            val = {"val_acc": vc[:, :, idx].mean(-1), "val_loss": -vl[:, :, idx].mean(-1)}
            target["rest_acc"] = (held_sum - vc[:, :, idx].sum(-1)) / (held_n - idx.size)
            for v in SLICES:
                for t in TARGETS:
                    rho[f"{v} vs {t}"].append(float(np.nanmean(spearman(val[v], target[t]))))
        table[str(size)] = {
            "per_class": per, "subsets": draws,
            "paired_se_acc": float(np.sqrt(discord / size)),
            **{k: {"mean": float(np.nanmean(x)), "std": float(np.nanstd(x)),
                   "p10": float(np.nanpercentile(x, 10)), "p90": float(np.nanpercentile(x, 90))}
               for k, x in rho.items()}}
    # ceiling: test halves (class-balanced, 250 a class each), many random halvings
    tby = [np.flatnonzero(ty == c) for c in classes]
    ceil: dict[str, list[float]] = {"acc": [], "loss": []}
    for _ in range(subsets):
        a = np.concatenate([rng.permutation(ix)[: ix.size // 2] for ix in tby])
        b = np.setdiff1d(np.arange(ty.size), a)
        ceil["acc"].append(float(np.nanmean(spearman(tc[:, :, a].mean(-1), tc[:, :, b].mean(-1)))))
        ceil["loss"].append(float(np.nanmean(spearman(-tl[:, :, a].mean(-1),
                                                      -tl[:, :, b].mean(-1)))))
    per_run = {r: {"val_acc_pool": [float(vc[i, j].mean()) for i in range(len(seeds))],
                   "val_loss_pool": [float(vl[i, j].mean()) for i in range(len(seeds))],
                   "test_acc": [float(tc[i, j].mean()) for i in range(len(seeds))],
                   "test_loss": [float(tl[i, j].mean()) for i in range(len(seeds))]}
               for j, r in enumerate(labels)}
    return {"regularizers": labels, "seeds": seeds, "pool_per_class": pool,
            "test_images": int(ty.size), "protocol": "C1: WRN-10-4, 16 px, 50 train/class, "
            "no augmentation, 30 epochs, batch 50, SGD lr 0.05 cosine, wd 5e-4",
            "statistic": "Spearman across regularizers within a seed, averaged over seeds; "
            "mean/std/p10/p90 over random class-balanced validation subsets",
            "sizes": table, "signal": signal,
            "ceiling_test_halves": {k: {"mean": float(np.mean(v)), "std": float(np.std(v))}
                                    for k, v in ceil.items()},
            "per_run": per_run}


def render(s: dict[str, Any]) -> str:
    keys = ("val_acc vs test_acc", "val_loss vs test_acc", "val_acc vs test_loss",
            "val_loss vs test_loss", "val_acc vs rest_acc", "val_loss vs rest_acc")
    out = ["| val images | subsets | paired SE of an acc gap | " + " | ".join(
        k.replace("_", " ").replace("rest", "held-out") for k in keys) + " |",
           "| ---: | ---: | ---: |" + " ---: |" * len(keys)]
    for size, row in s["sizes"].items():
        cells = [f"{row[k]['mean']:+.2f} ± {row[k]['std']:.2f}" for k in keys]
        out.append(f"| {int(size):,} | {row['subsets']} | {100 * row['paired_se_acc']:.2f} pt | "
                   + " | ".join(cells) + " |")
    g = s["signal"]
    out.append(f"\nsignal: mean gap between adjacent regularizers {100 * g['adjacent_gap_mean']:.2f}"
               f" pt, best - worst {100 * g['range_mean']:.2f} pt (accuracy on all held-out "
               f"images); share of images exactly one of two models gets right "
               f"{g['discordant_share']:.3f}")
    c = s["ceiling_test_halves"]
    out.append(f"\nceiling (test half vs test half, 2,500 each): acc {c['acc']['mean']:+.2f} ± "
               f"{c['acc']['std']:.2f}, loss {c['loss']['mean']:+.2f} ± {c['loss']['std']:.2f}")
    out.append("\n| regularizer | pool val acc | pool val loss | test acc | test loss |")
    out.append("| --- | ---: | ---: | ---: | ---: |")
    for r, v in s["per_run"].items():
        out.append(f"| {r} | {np.mean(v['val_acc_pool']):.4f} | {np.mean(v['val_loss_pool']):.3f}"
                   f" | {np.mean(v['test_acc']):.4f} | {np.mean(v['test_loss']):.3f} |")
    return "\n".join(out)


def main() -> None:
    global OUT
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3, help="seeds per regularizer")
    ap.add_argument("--pool-per-class", type=int, default=1000,
                    help="validation pool images a class, held out of cifar10-jpg/train")
    ap.add_argument("--subsets", type=int, default=500, help="random subsets per size")
    ap.add_argument("--epochs", type=float, default=30.0, help="epochs a child (C1: 30)")
    ap.add_argument("--out", default=str(OUT), help="results folder")
    ap.add_argument("--analyse-only", action="store_true", help="skip training")
    args = ap.parse_args()
    OUT = Path(args.out)
    if not args.analyse_only:
        train_all(args.seeds, args.pool_per_class, args.epochs)
    summary = analyse(args.subsets)
    summary["command"] = " ".join(["benchmarks/val_split_study.py", *sys.argv[1:]])
    atomic_write(OUT / "summary.json", (json.dumps(summary, indent=1) + "\n").encode())
    print(render(summary))


if __name__ == "__main__":
    main()
