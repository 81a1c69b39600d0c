"""Daemon benchmarks: slot occupancy and scheduling latency with 8 simulated GPU slots, and
``adsearch status --json`` on a store with 100,000 trials.

1. **Occupancy.** ``CUDA_VISIBLE_DEVICES=0,...,7`` gives the daemon 8 GPU slots; each child
   runs the synthetic task with a 0.5 s sleep (no torch, no GPU needed). The real detached
   daemon runs ``--budget-trials`` trials. From its final ``daemon-state.json`` and the
   trial records we report, per slot, the busy fraction (time a child process ran, from
   the daemon's start stamp to the child's own end stamp in its result file, over the
   slot's window from its first start to its last end) and the scheduling latency (from a
   child's end stamp to the next start stamp on that slot; it includes the child's exit). Targets: >= 95 % busy, median latency <= 50 ms.
2. **Status on a large store.** A store with 100,000 finished trials (written in bulk with
   the store's own tables); ``adsearch status --json`` is timed as a fresh process (wall,
   median of runs) and ``python -X importtime`` shows whether torch was imported.
   Target: <= 0.5 s, no torch.

Usage: ``.venv/bin/python benchmarks/bench_daemon.py [--trials 160] [--status-trials 100000]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "adsearch", *args], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"adsearch {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def occupancy(root: Path, trials: int, sleep: float) -> dict[str, float]:
    from adsearch.daemon.launch import load_search
    from adsearch.daemon.rundir import RunDir

    runs = root / "runs"
    env = dict(os.environ, ADSEARCH_RUNS=str(runs), CUDA_VISIBLE_DEVICES="0,1,2,3,4,5,6,7")
    cli(env, "start", "--task", "synthetic", "--task-config", json.dumps({"sleep": sleep}),
        "--budget-trials", str(trials), "--batch-size", "8", "--controller", "random",
        "--name", "occ")
    run = RunDir(runs / "occ")
    while run.daemon_pid() is not None:
        time.sleep(0.2)
    state = run.read_state() or {}
    store, search = load_search(run)
    try:
        recs = store.trials(search.id)
    finally:
        store.close()
    # per slot: spawn times (from the store) and child end times (from result files)
    by_slot: dict[int, list[tuple[float, float]]] = {}
    for t in recs:
        res = json.loads((run.trial_dir(t.id) / "result.json").read_text())
        assert t.started_at is not None and t.slot is not None
        start = t.started_at.replace(tzinfo=timezone.utc).timestamp()
        by_slot.setdefault(t.slot, []).append((start, float(res["ended_at"])))
    busy_fracs, latencies = [], []
    for runs_ in (sorted(v) for v in by_slot.values()):
        # busy: from the daemon's start stamp (after spawn) to the child's own end stamp;
        # the rest of the slot's window is scheduling gaps (and the child's exit)
        window = runs_[-1][1] - runs_[0][0]
        busy = sum(end - start for start, end in runs_)
        busy_fracs.append(busy / window if window > 0 else 0.0)
        latencies += [b[0] - a[1] for a, b in zip(runs_, runs_[1:], strict=False)]
    lat = sorted(latencies)
    return {
        "slots": len(by_slot),
        "trials": len(recs),
        "busy_median": statistics.median(busy_fracs),
        "busy_min": min(busy_fracs),
        "latency_median_ms": 1000 * statistics.median(lat),
        "latency_p90_ms": 1000 * lat[int(0.9 * (len(lat) - 1))],
        "daemon_latency_median_ms": 1000 * (state.get("scheduling", {}).get("median_latency_s") or 0),
    }


def build_large_store(root: Path, n: int) -> Path:
    """A finished search with ``n`` trials and results, written in bulk (setup only)."""
    from adsearch.daemon.config import SearchConfig
    from adsearch.daemon.rundir import RunDir
    from adsearch.patterns import SearchSpace
    from adsearch.store import Store
    from adsearch.store.models import ResultModel, TrialModel

    run = RunDir(root / "runs" / "big")
    url = run.default_store_url
    run.claim("big", url)
    space = SearchSpace.from_name("conv-3")
    rng = random.Random(0)
    now = datetime.now(timezone.utc)
    with Store(url) as store:
        cfg = SearchConfig(name="big", task="synthetic", space="conv-3", controller="random",
                           batch_size=8, workers=8, budget_trials=n)
        sid = store.create_search("big", cfg.to_dict()).id
        engine = store._engine  # bulk setup through the store's own tables
        with engine.begin() as conn:
            for lo in range(0, n, 10_000):
                trials, results = [], []
                for i in range(lo + 1, min(n, lo + 10_000) + 1):
                    toks = [rng.randrange(c) for c in space.choices()]
                    pats = [p.to_dict() for p in space.decode(toks)]
                    trials.append({"id": i, "search_id": sid, "pattern": pats,
                                   "pattern_hash": f"{i:032x}", "tokens": toks,
                                   "controller_version": i // 8, "logp": -30.0, "seed": i,
                                   "state": "done", "slot": i % 8, "attempts": 1, "pid": None,
                                   "error": None, "created_at": now, "started_at": now,
                                   "finished_at": now})
                    results.append({"id": i, "trial_id": i, "search_id": sid,
                                    "reward": rng.random(), "metrics": {"clean_reward": 0.5},
                                    "curve": [{"step": 1.0, "val_metric": 0.5}],
                                    "seconds": 0.5, "created_at": now})
                conn.execute(TrialModel.__table__.insert(), trials)
                conn.execute(ResultModel.__table__.insert(), results)
        store.set_search_state(sid, "finished")
    return root / "runs"


def status_timing(runs: Path, repeats: int) -> dict[str, float]:
    env = dict(os.environ, ADSEARCH_RUNS=str(runs))
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = cli(env, "status", "big", "--json")
        walls.append(time.perf_counter() - t0)
    snap = json.loads(out.stdout)
    imp = subprocess.run([sys.executable, "-X", "importtime", "-m", "adsearch", "status", "big",
                          "--json"], env=env, capture_output=True, text=True)
    mods = [ln.rsplit("|", 1)[-1].strip() for ln in imp.stderr.splitlines()
            if ln.startswith("import time:")]
    imports = {m: t for t, m in ((int(ln.split("|")[1]), ln.rsplit("|", 1)[-1].strip())
                                 for ln in imp.stderr.splitlines() if ln.startswith("import time:")
                                 and ln.split("|")[1].strip().isdigit())}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    bare = time.perf_counter() - t0
    # the queries alone, in this process (store already imported and open)
    from adsearch.daemon.launch import load_search
    from adsearch.daemon.rundir import RunDir
    from adsearch.views.status import build_status

    run = RunDir(runs / "big")
    store, search = load_search(run)
    try:
        builds = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            build_status(run, store, search)
            builds.append(time.perf_counter() - t0)
    finally:
        store.close()
    return {"trials": snap["trials"], "wall_median_s": statistics.median(walls),
            "wall_min_s": min(walls), "python_startup_s": bare,
            "build_median_s": statistics.median(builds),
            "import_store_s": imports.get("adsearch.store", 0) / 1e6,
            "import_cli_s": imports.get("adsearch.cli.main", 0) / 1e6,
            "torch_imported": any(m == "torch" or m.startswith("torch.") for m in mods)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=160, help="trials of the occupancy run")
    ap.add_argument("--sleep", type=float, default=0.5, help="seconds each child sleeps")
    ap.add_argument("--status-trials", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        occ = occupancy(Path(tmp) / "occ", args.trials, args.sleep)
        runs = build_large_store(Path(tmp) / "big", args.status_trials)
        st = status_timing(runs, args.repeats)
    print("## slot occupancy: 8 simulated GPU slots (CUDA_VISIBLE_DEVICES=0..7), synthetic "
          f"children sleeping {args.sleep} s, {occ['trials']} trials\n")
    print("| metric | median | target | ok |")
    print("| --- | --- | --- | --- |")
    print(f"| busy fraction per slot (min {occ['busy_min']:.3f}) | {occ['busy_median']:.3f} "
          f"| >= 0.95 | {'yes' if occ['busy_median'] >= 0.95 else 'NO'} |")
    print(f"| scheduling latency, child end -> next spawn (p90 {occ['latency_p90_ms']:.0f} ms) "
          f"| {occ['latency_median_ms']:.1f} ms | <= 50 ms "
          f"| {'yes' if occ['latency_median_ms'] <= 50 else 'NO'} |")
    print(f"| latency seen by the daemon (its own clock) | {occ['daemon_latency_median_ms']:.1f} ms | | |")
    print(f"\n## `adsearch status --json` on a store with {st['trials']:,} trials "
          f"({args.repeats} runs)\n")
    print("| metric | median | target | ok |")
    print("| --- | --- | --- | --- |")
    print(f"| wall time, fresh process (min {st['wall_min_s']:.3f} s) | {st['wall_median_s']:.3f} s "
          f"| <= 0.5 s | {'yes' if st['wall_median_s'] <= 0.5 else 'NO'} |")
    print(f"| of which: the status queries (in-process `build_status`) | {st['build_median_s']:.3f} s | | |")
    print(f"| of which: importing adsearch.store (SQLAlchemy) | {st['import_store_s']:.3f} s | | |")
    print(f"| of which: importing the CLI (Typer, Rich) | {st['import_cli_s']:.3f} s | | |")
    print(f"| bare `python -c pass` for comparison | {st['python_startup_s']:.3f} s | | |")
    print(f"| torch imported (python -X importtime) | {st['torch_imported']} | False "
          f"| {'yes' if not st['torch_imported'] else 'NO'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
