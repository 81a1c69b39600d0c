"""Store throughput and the status queries on a search with 100,000 trials.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_store.py [--trials 100000] [--repeats 7] [--url URL]

Prints medians. Without ``--url`` it uses a fresh SQLite file in a temporary folder. The
anchor is plain ``sqlite3`` ``executemany`` of the same rows into the same table, measured
in the same run, so the ratio shows what the ORM, JSON encoding and records cost.

What is timed:

- ``add_trials``: bulk inserts of 1,000 trials per call until the search has ``--trials``;
- ``update_trial``: one compare-and-set state change (queued -> running) per call;
- ``update_trials``: one bulk state change of 1,000 trials per call;
- ``finish_trial``: one result + terminal state per call;
- status: open ``Store(url, readonly=True)``, ``counts``, ``top_trials(k=10)``,
  ``trials(states=["running"])``, ``events(limit=20)``, ``latest_checkpoint``, close:
  everything ``adsearch status --json`` needs, on a search whose trials are half finished.

On PostgreSQL (``--url postgresql+psycopg://...``) the script runs ``VACUUM ANALYZE`` after
the bulk load, as autovacuum would within a minute, before timing the status queries.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, insert, update

from adsearch.store import NewTrial, Store
from adsearch.store.models import ResultModel, TrialModel
from adsearch.store.records import utcnow

BATCH = 1000


def _trials(n: int, start: int, rng: random.Random) -> list[NewTrial]:
    return [
        NewTrial(
            pattern=[{"size": rng.choice([3, 5, 7]), "stride": rng.randint(0, 4), "repeat": None,
                      "rotate": rng.choice([0, 15, 30]), "shear_x": 0.0, "shear_y": 0.1,
                      "share_c": True, "residual": False} for _ in range(3)],
            pattern_hash=f"{start + i:064x}", tokens=[rng.randrange(12) for _ in range(24)],
            controller_version=(start + i) // 64, logp=-rng.random() * 40, seed=start + i,
        )
        for i in range(n)
    ]  # fmt: skip


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000.0


def _timed(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _fill_results(store: Store, search_id: int, ids: list[int], rng: random.Random) -> None:
    """Finish ``ids`` in bulk (setup only: the timed finish_trial path is measured apart)."""
    if not ids:
        return
    now = utcnow()
    with store._session() as s:
        s.execute(
            insert(ResultModel),
            [{"trial_id": t, "search_id": search_id, "reward": rng.random(),
              "metrics": {"accuracy": rng.random()}, "curve": [{"epoch": e, "acc": rng.random()}
              for e in range(5)], "seconds": 60.0, "created_at": now} for t in ids],
        )  # fmt: skip
        s.execute(
            update(TrialModel).where(TrialModel.id.in_(ids)).values(state="done", finished_at=now),
            execution_options={"synchronize_session": False},
        )


def _anchor_insert(path: Path, items: list[NewTrial]) -> float:
    now = utcnow().isoformat(sep=" ")
    rows = [(1, json.dumps(it.pattern), it.pattern_hash, json.dumps(it.tokens),
             it.controller_version, it.logp, it.seed, "queued", 0, now) for it in items]  # fmt: skip
    con = sqlite3.connect(path, isolation_level=None)
    t0 = time.perf_counter()
    con.execute("BEGIN IMMEDIATE")
    con.executemany(
        "INSERT INTO trials (search_id, pattern, pattern_hash, tokens, controller_version, logp, "
        "seed, state, attempts, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    con.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    con.close()
    return elapsed


def main() -> None:
    """Run the benchmark and print a table of medians."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=7, help="repeats of each status query set")
    ap.add_argument("--url", default=None, help="store URL (default: a temporary SQLite file)")
    args = ap.parse_args()
    if args.trials < 6000:
        ap.error("--trials must be at least 6000 (2000 of them are finished one by one)")
    tmp = Path(tempfile.mkdtemp(prefix="bench_store_"))
    url = args.url or f"sqlite:///{tmp / 'bench.db'}"
    rng = random.Random(0)
    store = Store(url)
    search = store.create_search(f"bench-{time.time_ns()}", {"task": "synthetic"})
    sid = search.id

    insert_s, ids = [], []
    for start in range(0, args.trials, BATCH):
        items = _trials(min(BATCH, args.trials - start), start, rng)
        t0 = time.perf_counter()
        ids += [t.id for t in store.add_trials(sid, items)]
        insert_s.append(time.perf_counter() - t0)
    anchor_s = []
    if url.startswith("sqlite"):
        anchor = Store(f"sqlite:///{tmp / 'anchor.db'}")
        anchor.create_search("anchor", {})
        anchor.close()
        anchor_s = [
            _anchor_insert(tmp / "anchor.db", _trials(BATCH, i * BATCH, rng)) for i in range(20)
        ]

    half = ids[: len(ids) // 2]
    _fill_results(store, sid, half[:-2000], rng)
    cas = half[-2000:-1000]
    cas_s = _timed_each(lambda t: store.update_trial(t, expect_state="queued", state="running",
                                                     pid=1234, slot=0, started_at=utcnow()), cas)  # fmt: skip
    finish_s = _timed_each(lambda t: store.finish_trial(t, rng.random(), {"accuracy": 0.5},
                                                        [{"epoch": 1, "acc": 0.5}], 60.0), cas)  # fmt: skip
    bulk_ids = half[-1000:]
    bulk_s = _timed(lambda: store.update_trials(bulk_ids, state="running"), 1)
    bulk_s += _timed(lambda: store.update_trials(bulk_ids, state="queued"), 1)
    store.update_trials(ids[len(ids) // 2 : len(ids) // 2 + 8], state="running")  # 8 workers busy
    for i in range(200):
        store.log_event(sid, "trial.done", f"trial {i} done", {"i": i})
    store.add_checkpoint(sid, 1, "ckpt/1.pt", half[:64])
    store.close()
    if url.startswith("postgresql"):
        # What autovacuum does within a minute of a bulk load: without fresh statistics the
        # planner ignores the top-k index (about 0.2 s instead of 1 ms on 100,000 trials).
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
        engine.dispose()

    def status() -> None:
        with Store(url, readonly=True) as ro:
            ro.counts(sid)
            ro.top_trials(sid, 10)
            ro.trials(sid, states=["running"])
            ro.events(sid, limit=20)
            ro.latest_checkpoint(sid)

    status_s = _timed(status, args.repeats)
    with Store(url, readonly=True) as ro:
        counts = ro.counts(sid)
        parts = {
            "counts": _timed(lambda: ro.counts(sid), args.repeats),
            "top_trials(k=10)": _timed(lambda: ro.top_trials(sid, 10), args.repeats),
            "trials(running)": _timed(lambda: ro.trials(sid, states=["running"]), args.repeats),
            "events(20)": _timed(lambda: ro.events(sid, limit=20), args.repeats),
            "reward_series (all)": _timed(lambda: ro.reward_series(sid), 3),
        }

    print(f"store: {url.split('://')[0]}, {args.trials} trials, counts {counts}")
    print(f"{'operation':<34}{'median':>12}{'throughput':>16}")
    ins = statistics.median(insert_s)
    print(f"{'add_trials (1000/call)':<34}{ins * 1000:>10.1f} ms{BATCH / ins:>12.0f} /s")
    if anchor_s:
        a = statistics.median(anchor_s)
        print(f"{'  anchor: sqlite3 executemany':<34}{a * 1000:>10.1f} ms{BATCH / a:>12.0f} /s"
              f"   (store/anchor = {ins / a:.1f}x)")  # fmt: skip
    for name, xs, per in (("update_trial (CAS, 1/call)", cas_s, 1), ("update_trials (1000/call)", bulk_s, 1000),
                          ("finish_trial (1/call)", finish_s, 1)):  # fmt: skip
        m = statistics.median(xs)
        print(f"{name:<34}{m * 1000:>10.2f} ms{per / m:>12.0f} /s")
    print(f"{'status: open+5 queries+close':<34}{_median_ms(status_s):>10.1f} ms")
    for name, xs in parts.items():
        print(f"{'  ' + name:<34}{_median_ms(xs):>10.2f} ms")


def _timed_each(fn: Callable[[int], object], ids: list[int]) -> list[float]:
    out = []
    for t in ids:
        t0 = time.perf_counter()
        fn(t)
        out.append(time.perf_counter() - t0)
    return out


if __name__ == "__main__":
    main()
