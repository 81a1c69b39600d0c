#!/usr/bin/env python3
"""What does ASHA buy on CIFAR-10-mini? (issue 14 §1)

Three searches over the same stream of random conv-3 patterns (seed 0), each for the same
wall budget, one child at a time, with the real child (WRN-10-2 on CIFAR-10-mini, shared
child seed, validation split only), the real ``Budget.prune_now`` and a real SQLite store:

- ``none``: every child trains ``--max-epochs``; its values at the would-be rungs are
  recorded too (keep = 1: nobody is stopped), which gives the **rank correlation** of the
  rung values with the full-budget values (Spearman, rung by rung);
- ``one-rung``: the old ``--prune-at-epoch 1 --prune-quantile 0.25`` (8 values first);
- ``asha``: ``--scheduler asha --min-epochs 1 --max-epochs M --eta 3``.

For each: children judged per hour (finished, truncated or full: each gets a verdict and a
controller reward), full-budget children per hour, epochs trained per hour, and the best
pattern's full-budget validation accuracy. The pattern stream and child seed are the same in
every mode, so the ``asha`` search sees a superset of ``none``'s patterns.

Usage (pinned to one core; about 3 x ``--minutes`` in all)::

    taskset -c 1 .venv/bin/python benchmarks/bench_asha.py [--minutes 5] [--max-epochs 9] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from adsearch.daemon.pruning import Schedule
from adsearch.patterns import SearchSpace
from adsearch.rungs import rungs_for
from adsearch.store import Store
from adsearch.store.records import NewTrial
from adsearch.tasks import Budget, get_task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_reward_noise import spearman  # noqa: E402  (one copy of the rank correlation)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"
MACHINE = "2-core shared CPU (one core pinned), no GPU"


def run_mode(mode: str, sched: Schedule, seconds: float, task: Any, config: Any, space: SearchSpace,
             max_epochs: float, child_seed: int) -> dict[str, Any]:
    """One search of ``seconds`` wall time; returns its children's outcomes."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        store = Store(url)
        sid = store.create_search(mode, {}).id
        rng = random.Random(0)  # the same pattern stream in every mode
        children: list[dict[str, Any]] = []
        t0 = time.time()
        while time.time() - t0 < seconds:
            pats = space.sample(rng)
            rec = store.add_trials(sid, [NewTrial(pattern=[p.to_dict() for p in pats], pattern_hash=str(len(children)), tokens=space.encode(pats), controller_version=0, logp=0.0, seed=child_seed)])[0]
            budget = Budget(epochs=max_epochs, rungs=sched.rungs, top_rung=sched.top, keep=sched.keep,
                            min_trials=sched.min_trials, store_url=url, trial_id=rec.id,
                            reporter=store)
            res = task.run_child(config, pats, budget, "cpu", child_seed)
            if time.time() - t0 > seconds:  # over the budget: not counted (the same cut for all)
                break
            rungs = {r.rung: r.value for r in store.rung_rows(sid) if r.trial_id == rec.id}
            children.append({"patterns": [p.to_dict() for p in pats], "reward": res.reward,
                             "truncated": bool(res.metrics.get("truncated")), "epochs": float(res.curve[-1]["epoch"]),
                             "rungs": rungs, "seconds": res.seconds})
            if len(children) <= 12 or len(children) % 25 == 0:
                print(f"  {mode} child {len(children)}: {len(res.curve)} epochs, value {res.reward:.3f}"
                      f"{' (stopped)' if children[-1]['truncated'] else ''}", flush=True)
        elapsed = time.time() - t0
        store.close()
    full = [c for c in children if not c["truncated"]]
    hours = elapsed / 3600
    return {"mode": mode, "seconds": elapsed, "children": children,
            "judged_per_hour": len(children) / hours, "full_per_hour": len(full) / hours,
            "epochs_per_hour": sum(c["epochs"] for c in children) / hours,
            "best_full": max((c["reward"] for c in full), default=None)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="wall budget of each of the 3 searches")
    ap.add_argument("--max-epochs", type=float, default=9.0)
    ap.add_argument("--eta", type=float, default=3.0)
    ap.add_argument("--train-per-class", type=int, default=100)
    ap.add_argument("--val-per-class", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="tiny protocol (smoke run; not written)")
    ap.add_argument("--task", choices=("cifar10", "synthetic"), default="cifar10",
                    help="synthetic: the scheduling-only check (each epoch sleeps --epoch-seconds)")
    ap.add_argument("--epoch-seconds", type=float, default=0.2, help="with --task synthetic")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = {"data": str(DATA / "cifar10-jpg"), "train_per_class": 20 if args.quick else args.train_per_class,
           "val_per_class": 10 if args.quick else args.val_per_class, "split_seed": 0, "depth": 10, "width": 2,
           "epochs": args.max_epochs, "batch_size": 64, "lr": 0.05}
    if args.task == "synthetic":  # the synthetic curve (adsearch/tasks/synthetic.py), no torch work
        cfg = {"epochs": args.max_epochs, "sleep": args.epoch_seconds * args.max_epochs, "noise_sd": 0.05}
    task = get_task(args.task)
    config = task.config_from_dict(cfg)
    space = SearchSpace.from_name("conv-3")
    rungs = rungs_for(1.0, args.max_epochs, args.eta)
    modes = {
        "none": Schedule(rungs, args.max_epochs, 1.0, 1),  # records rung values, stops nobody
        "one-rung": Schedule((1.0,), args.max_epochs, 0.75, 8),  # --prune-at-epoch 1 (q 0.25)
        "asha": Schedule(rungs, args.max_epochs, 1.0 / args.eta, int(-(-args.eta // 1))),
    }
    seconds = (0.5 if args.quick else args.minutes) * 60
    out = {m: run_mode(m, s, seconds, task, config, space, args.max_epochs, 7) for m, s in modes.items()}
    none = out["none"]
    full_vals = [c["reward"] for c in none["children"]]
    rho = {}
    for r in rungs:
        at = [c["rungs"].get(r) for c in none["children"]]
        if len(at) >= 3 and None not in at:
            rho[r] = spearman(at, full_vals)  # type: ignore[arg-type]
    what = (f"synthetic ({args.epoch_seconds:g} s per epoch)" if args.task == "synthetic" else
            f"CIFAR-10-mini (WRN-10-2, {cfg['train_per_class']}/class train, {cfg['val_per_class']}/class val)")
    print(f"\n{what}, max {args.max_epochs:g} "
          f"epochs, rungs {', '.join(f'{r:g}' for r in rungs)} (eta {args.eta:g}), {seconds / 60:g} min per search, one core\n")
    print("| rung (epochs) | Spearman with the full-budget value (none's children) |\n| ---: | ---: |")
    for r, v in rho.items():
        print(f"| {r:g} | {v:.2f} (n={len(full_vals)}) |")
    print("\n| scheduler | children judged / h | vs none | full-budget children / h | epochs / h | best full-budget val acc |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for m, o in out.items():
        best = "-" if o["best_full"] is None else f"{o['best_full']:.3f}"
        ratio = o["judged_per_hour"] / none["judged_per_hour"] if none["judged_per_hour"] else float("nan")
        print(f"| {m} | {o['judged_per_hour']:.0f} | {ratio:.2f}x | "
              f"{o['full_per_hour']:.0f} | {o['epochs_per_hour']:.0f} | {best} |")
    if not args.quick:
        doc = {"command": "taskset -c 1 python " + " ".join(["benchmarks/bench_asha.py", *sys.argv[1:]]),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": MACHINE,
               "torch": torch.__version__, "python": platform.python_version(), "config": cfg,
               "rungs": list(rungs), "eta": args.eta, "spearman": {str(k): v for k, v in rho.items()},
               "modes": out}
        name = "asha.json" if args.task == "cifar10" else "asha_synthetic.json"
        (RESULTS / name).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {RESULTS / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
