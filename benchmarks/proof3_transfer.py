#!/usr/bin/env python3
"""Proof round 3, transfer (issue 15 §3): the LM search's pattern file, unchanged, on
Multi30k En-Fr, against none and Dropout tuned on validation, paired over seeds.

Protocol (**ours**, CPU scale): the first ``--train-limit`` training pairs (default 4,000) for
``--epochs`` (default 6) with the task's 2+2-layer d=128 Transformer; BLEU (sacrebleu,
tokenized, lowercased, greedy decoding) on the first ``--eval-limit`` pairs (default 500) of
``val`` (selection) and of ``test_2016_flickr`` (report).

- tune: Dropout at each rate of ``adsearch verify``'s grid, seed 10000 (not a test seed);
  the best mean validation BLEU picks the rate;
- test: none, the tuned Dropout and the pattern file at seeds ``0..N-1`` (the task seeds
  init and data order from the seed, so runs pair up seed by seed); paired differences of
  test BLEU with 95% t intervals.

Children run ``--jobs`` at a time, each process pinned to its own core with 1 torch thread.
Every finished run is appended to the output JSON at once; a rerun skips the runs it holds.

Usage::

    .venv/bin/python benchmarks/proof3_transfer.py --pattern benchmarks/results/proof3/lm-transformer.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
OUT = REPO / "benchmarks" / "results" / "proof3" / "transfer.json"


def _init(counter: Any, cores: list[int]) -> None:
    import torch

    with counter.get_lock():
        i = counter.value
        counter.value += 1
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cores[i % len(cores)]})
    torch.set_num_threads(1)


def _run(cfg: dict[str, Any], reg: Any, seed: int, pattern_file: str | None) -> dict[str, Any]:
    from adsearch.patterns import load_patternset
    from adsearch.tasks import get_task

    task = get_task("translation")
    config = task.config_from_dict(cfg)
    regularizer = load_patternset(pattern_file) if pattern_file else reg
    res = task.run_child(config, regularizer, None, "cpu", seed)
    return {"metrics": res.metrics, "seconds": res.seconds}


def main() -> None:
    from adsearch.verify.plan import GRID_RATES, TUNE_SEED
    from adsearch.verify.stats import paired_diff, summarize

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pattern", required=True, help="pattern file written by `adsearch export` (the LM search's)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cores", default=None, help="comma list of cores to pin the jobs to (default 0..jobs-1)")
    ap.add_argument("--train-limit", type=int, default=4000)
    ap.add_argument("--eval-limit", type=int, default=500)
    ap.add_argument("--epochs", type=float, default=6.0)
    ap.add_argument("-o", "--output", type=Path, default=OUT)
    args = ap.parse_args()
    from adsearch.patterns import load_patternset

    ps = load_patternset(args.pattern)  # a bad file fails here, before any training
    cfg = {"data": str(DATA / "multi30k-en-fr"), "train_limit": args.train_limit,
           "eval_limit": args.eval_limit, "epochs": args.epochs}
    doc: dict[str, Any] = json.loads(args.output.read_text()) if args.output.is_file() else {}
    if doc and doc.get("config") != cfg:
        sys.exit(f"error: {args.output} holds runs of another protocol ({doc.get('config')}); pass -o NEW")
    doc.update(config=cfg, pattern_file=str(args.pattern), pattern=ps.to_dict(),
               command="python " + " ".join(["benchmarks/proof3_transfer.py", *sys.argv[1:]]))
    runs: list[dict[str, Any]] = doc.setdefault("runs", [])

    def have(label: str, seed: int) -> dict[str, Any] | None:
        return next((r for r in runs if r["label"] == label and r["seed"] == seed), None)

    def save() -> None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.output.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        tmp.replace(args.output)

    import multiprocessing as mp

    counter = mp.get_context("spawn").Value("i", 0)
    cores = [int(c) for c in args.cores.split(",")] if args.cores else list(range(args.jobs))

    def stage(items: list[tuple[str, Any, int, str | None]]) -> None:
        todo = [it for it in items if have(it[0], it[2]) is None]
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn"), initializer=_init, initargs=(counter, cores)) as ex:
            futs = {ex.submit(_run, cfg, reg, seed, pf): (label, seed) for label, reg, seed, pf in todo}
            for f in as_completed(futs):
                label, seed = futs[f]
                out = f.result()
                runs.append({"label": label, "seed": seed, **out, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
                save()
                m = out["metrics"]
                print(f"{label} seed {seed}: val_bleu {m['val_bleu']:.2f} test_bleu {m['test_bleu']:.2f} ({out['seconds']:.0f} s)", flush=True)

    tune = [(f"dropout p={p}", {"kind": "dropout", "drop_prob": p}, TUNE_SEED, None) for p in GRID_RATES]
    stage(tune)
    best_p = max(GRID_RATES, key=lambda p: have(f"dropout p={p}", TUNE_SEED)["metrics"]["val_bleu"])  # type: ignore[index]
    doc["tuned_dropout"] = best_p
    seeds = list(range(args.seeds))
    arms = [("none", {"kind": "none"}, None), (f"dropout p={best_p}", {"kind": "dropout", "drop_prob": best_p}, None),
            ("pattern (LM search)", None, str(args.pattern))]
    stage([(label, reg, s, pf) for label, reg, pf in arms for s in seeds])
    by = {label: {s: have(label, s)["metrics"]["test_bleu"] for s in seeds} for label, _, _ in arms}  # type: ignore[index]
    val = {label: statistics.fmean(have(label, s)["metrics"]["val_bleu"] for s in seeds) for label, _, _ in arms}  # type: ignore[index]
    pat = by["pattern (LM search)"]
    doc["summary"] = {label: {"test": summarize(list(v.values())).to_dict(), "val_mean": val[label]} for label, v in by.items()}
    doc["pattern_vs"] = {label: paired_diff(pat, v).to_dict() for label, v in by.items() if label != "pattern (LM search)"}
    bar = max(statistics.fmean(by["none"].values()), statistics.fmean(by[f"dropout p={best_p}"].values()))
    doc["target"] = {"bar": bar, "pattern": statistics.fmean(pat.values()), "met": statistics.fmean(pat.values()) >= bar}
    save()
    print(json.dumps({k: doc[k] for k in ("tuned_dropout", "summary", "pattern_vs", "target")}, indent=1, default=str))


if __name__ == "__main__":
    main()
