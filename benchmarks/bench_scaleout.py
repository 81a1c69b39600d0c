"""Scale-out benchmarks: the database queue on PostgreSQL, and the Ray executor's overhead.

1. **Claim throughput.** A real PostgreSQL (``$ADSEARCH_TEST_PG``, or a throw-away server
   started like the tests do) holds a search with ``--claims`` queued trials. K processes
   (K = 1, 2, 4) each loop ``DbQueue.claim`` + ``DbQueue.ack`` until the queue is empty
   (the queue alone: ``FOR UPDATE SKIP LOCKED`` and the lease write). Then K real
   ``adsearch worker --inline --burst`` processes run the same number of trivial synthetic
   trials through the whole cycle (claim, mark running, run, store the result, ack).
   Reported: claims/s and trials/s from the first claim to the last ack, median of rounds.
2. **Executor overhead per trial.** The same synthetic search (``sleep`` 0, random
   controller, 2 slots, SQLite store) on the local executor (a subprocess per child) and on
   Ray (a task per child, local ``ray.init(num_cpus=2)``, started once outside the timing):
   daemon wall time per trial, median of rounds.

Usage: ``.venv/bin/python benchmarks/bench_scaleout.py [--claims 2000] [--trials 40] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def _seed(url: str, name: str, n: int) -> None:
    from adsearch.daemon.config import SearchConfig
    from adsearch.patterns import SearchSpace
    from adsearch.patterns.canonical import pattern_hash
    from adsearch.queue.dbqueue import DbQueue
    from adsearch.store import NewTrial, Store

    space = SearchSpace.from_name("conv-3")
    pats = [p.to_dict() for p in space.sample(random.Random(0))]
    tokens = space.encode(space.sample(random.Random(0)))
    cfg = SearchConfig(name=name, task="synthetic", task_config={"noise_sd": 0.0}, workers=1)
    with Store(url) as st:
        sid = st.create_search(name, cfg.to_dict()).id
        st.set_search_state(sid, "running")
        ids = [t.id for t in st.add_trials(sid, [
            NewTrial(pats, pattern_hash(pats), tokens, 0, -1.0, i) for i in range(n)])]
        DbQueue(st, sid).push(ids)


def _claimer(url: str, name: str, start: mp.Event, out: mp.Queue) -> None:  # type: ignore[type-arg]
    from adsearch.queue.dbqueue import DbQueue
    from adsearch.store import Store

    with Store(url) as st:
        q = DbQueue(st, st.get_search(name).id)
        start.wait()
        t0, n = time.perf_counter(), 0
        while (lease := q.claim(f"bench-{os.getpid()}", "s")) is not None:
            q.ack(lease.trial_id)
            n += 1
        out.put((t0, time.perf_counter(), n))


def claims_per_s(url: str, k: int, n: int, tag: str) -> float:
    name = f"claims-{k}-{tag}"
    _seed(url, name, n)
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(url, name, start, out)) for _ in range(k)]
    for p in procs:
        p.start()
    time.sleep(2.0)  # every process has opened its store
    start.set()
    res = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    assert sum(r[2] for r in res) == n
    return n / (max(r[1] for r in res) - min(r[0] for r in res))


def trials_per_s(url: str, k: int, n: int, tag: str, work: Path) -> float:
    from adsearch.store import Store

    name = f"workers-{k}-{tag}"
    _seed(url, name, n)
    cmd = [sys.executable, "-m", "adsearch", "worker", "--store", url, "--search", name,
           "--inline", "--burst"]
    procs = [subprocess.Popen([*cmd, "--work-dir", str(work / f"{name}-{i}")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for i in range(k)]
    for p in procs:
        assert p.wait(timeout=900) == 0
    with Store(url, readonly=True) as st:
        sid = st.get_search(name).id
        trials = st.trials(sid)
        assert len(st.results(sid)) == n
        first = min(t.started_at for t in trials if t.started_at)
        last = max(t.finished_at for t in trials if t.finished_at)
    return n / (last - first).total_seconds()


def executor_ms_per_trial(executor: str, trials: int, work: Path, tag: str) -> float:
    from adsearch.daemon.config import SearchConfig
    from adsearch.daemon.launch import create_search
    from adsearch.daemon.rundir import RunDir
    from adsearch.daemon.runner import run_daemon

    cfg = SearchConfig(name=f"{executor}-{tag}", task="synthetic", controller="random",
                       executor=executor, workers=2, budget_trials=trials, batch_size=8)
    run = create_search(cfg, RunDir(work / cfg.name))
    t0 = time.perf_counter()
    daemon = run_daemon(str(run.path))
    wall = time.perf_counter() - t0
    assert daemon.finished
    return wall / trials * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from store_backends import _PG, _fresh_database

    base = os.environ.get("ADSEARCH_TEST_PG") or _PG.acquire()
    url = next(_fresh_database(base))
    work = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    print(f"PostgreSQL {url.split('@')[-1]}; {args.claims} claims, {args.rounds} rounds")
    print("| workers | queue claims/s (median) | worker trials/s (median) |")
    print("|---|---|---|")
    for k in (1, 2, 4):
        c = [claims_per_s(url, k, args.claims, f"r{r}") for r in range(args.rounds)]
        t = [trials_per_s(url, k, args.claims, f"r{r}", work) for r in range(args.rounds)]
        print(f"| {k} | {statistics.median(c):.0f} | {statistics.median(t):.0f} |", flush=True)

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_ms, local_ms = [], []
    for r in range(args.rounds):  # interleaved, so a busy moment hits both alike
        local_ms.append(executor_ms_per_trial("local", args.trials, work, f"r{r}"))
        ray_ms.append(executor_ms_per_trial("ray", args.trials, work, f"r{r}"))
    ray.shutdown()
    lm, rm = statistics.median(local_ms), statistics.median(ray_ms)
    print(f"\n{args.trials} synthetic trials (sleep 0), 2 slots, {args.rounds} rounds")
    print("| executor | wall ms per trial (median) | ratio to local |")
    print("|---|---|---|")
    print(f"| local (subprocess per child) | {lm:.0f} | 1.00 |")
    print(f"| ray (task per child) | {rm:.0f} | {rm / lm:.2f} |")
    if not os.environ.get("ADSEARCH_TEST_PG"):
        _PG.release()


if __name__ == "__main__":
    main()
