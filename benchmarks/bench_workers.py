"""Search throughput with 0, 1 and 2 ``adsearch worker`` hosts beside the daemon, in one run.

A real PostgreSQL (``$ADSEARCH_TEST_PG``, or a throw-away server started like the tests do)
holds one search per configuration: synthetic children that sleep ``--child-seconds`` (2 s:
fixed length, so throughput measures scheduling and scale-out, not training noise), random
controller, ``--trials`` trials. The daemon (``python -m adsearch.daemon``, detached, as
``adsearch start`` runs it) has 1 slot; each worker is a real ``adsearch worker --workers 1``
process with its own subprocess children, started (and initialized) before the daemon so
that all run from the first trial. Throughput is trials per hour from the first child's
start to the last child's end, as the store records them; rounds interleave the three
configurations so a busy moment hits them alike. Reported: medians over rounds and the
ratio against 0 workers (ideal: 1 + k, one extra slot per worker).

Usage: ``taskset -c 0 .venv/bin/python benchmarks/bench_workers.py [--trials 15] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def _wait(pred: object, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not pred():  # type: ignore[operator]
        if time.time() > deadline:
            raise SystemExit(f"error: timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def trials_per_hour(url: str, k: int, trials: int, child_s: float, tag: str,
                    work: Path) -> float:
    """One search with ``k`` workers; returns trials/hour over the children's span."""
    from adsearch.daemon.config import SearchConfig
    from adsearch.daemon.launch import create_search, spawn_detached
    from adsearch.daemon.rundir import RunDir, pid_alive
    from adsearch.store import Store

    name = f"w{k}-{tag}"
    cfg = SearchConfig(name=name, task="synthetic", controller="random", workers=1,
                       budget_trials=trials, batch_size=3, lookahead=4,
                       task_config={"sleep": child_s, "noise_sd": 0.0})
    run = create_search(cfg, RunDir(work / name), store_url=url)
    cmd = [sys.executable, "-m", "adsearch", "worker", "--store", url, "--search", name,
           "--workers", "1"]
    procs = [subprocess.Popen([*cmd, "--work-dir", str(work / f"{name}-host{i}")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for i in range(k)]
    with Store(url, readonly=True) as st:
        sid = st.get_search(name).id
        _wait(lambda: sum(e.kind == "worker.start" for e in st.events(sid, 100)) == k,
              120, f"{k} worker(s) to start")
        daemon = spawn_detached(run)
        try:
            _wait(lambda: st.get_search(name).state == "finished", 60 + 4 * trials * child_s,
                  f"search {name} to finish")
        finally:
            if pid_alive(daemon):
                os.kill(daemon, signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=30)  # workers exit once they see the search finished
                except subprocess.TimeoutExpired:
                    p.kill()
        ts = st.trials(sid)
        assert sum(t.state == "done" for t in ts) == trials, [t.state for t in ts]
        placed = [e.data.get("owner") for e in st.events(sid, 10 * trials)
                  if e.kind == "trial.placed"]
        assert len(set(placed)) <= k, placed
        first = min(t.started_at for t in ts if t.started_at)
        last = max(t.finished_at for t in ts if t.finished_at)
    print(f"  {name}: {len(placed)} of {trials} trials ran on {len(set(placed))} worker(s)",
          flush=True)
    return trials / (last - first).total_seconds() * 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child-seconds", type=float, default=2.0)
    args = parser.parse_args()
    from store_backends import _PG, _fresh_database

    base = os.environ.get("ADSEARCH_TEST_PG") or _PG.acquire()
    url = next(_fresh_database(base))
    work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    cpus = sorted(os.sched_getaffinity(0))
    print(f"PostgreSQL {url.split('@')[-1]}; {args.trials} trials of {args.child_seconds:g} s "
          f"children per search, daemon 1 slot + k workers x 1 slot, {args.rounds} rounds, "
          f"CPUs {cpus}")
    t0 = time.perf_counter()
    rates: dict[int, list[float]] = {0: [], 1: [], 2: []}
    for r in range(args.rounds):
        for k in rates:
            rates[k].append(trials_per_hour(url, k, args.trials, args.child_seconds, f"r{r}",
                                            work))
            print(f"  round {r} k={k}: {rates[k][-1]:.0f} trials/h", flush=True)
    base_rate = statistics.median(rates[0])
    print("\n| workers | slots | trials/hour (median) | ratio to 0 workers | ideal |")
    print("|---|---|---|---|---|")
    for k, xs in rates.items():
        m = statistics.median(xs)
        print(f"| {k} | {1 + k} | {m:.0f} | {m / base_rate:.2f} | {1 + k:.2f} |")
    print(f"\nwall {time.perf_counter() - t0:.0f} s")
    if not os.environ.get("ADSEARCH_TEST_PG"):
        _PG.release()


if __name__ == "__main__":
    main()
