"""Real processes on one store (SQLite, and PostgreSQL for the claim race): writers never see "database is locked", readers never
block the writer, and compare-and-set hands each trial to exactly one worker."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from store_backends import *  # noqa: F403  (fixtures: store_url, store, sqlite_url, pg_base_url)
from store_backends import new_trials

from adsearch.store import SCHEMA_HEAD, Store, current_revision

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}

WORKER = textwrap.dedent(
    """
    import json, os, sys
    from adsearch.errors import StoreError
    from adsearch.store import Store
    url, search_id = sys.argv[1], int(sys.argv[2])
    store = Store(url)
    claimed, lost = [], 0
    while True:
        queued = store.trials(search_id, states=["queued"], limit=4)
        if not queued:
            break
        for t in queued:
            try:
                store.update_trial(t.id, expect_state="queued", state="running", pid=os.getpid(),
                                   attempts=t.attempts + 1)
            except StoreError as exc:
                if "another process changed it first" not in str(exc):
                    raise
                lost += 1
                continue
            store.finish_trial(t.id, t.seed / 1000.0, {"pid": os.getpid()}, [], 0.01)
            store.log_event(search_id, "trial.done", f"trial {t.id} done")
            claimed.append(t.id)
    print(json.dumps({"claimed": claimed, "lost": lost}))
    """
)

READER = textwrap.dedent(
    """
    import sys, time
    from adsearch.store import Store
    url, search_id, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    reads = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        store = Store(url, readonly=True)  # like `adsearch status`: open, query, close
        counts = store.counts(search_id)
        store.top_trials(search_id, 5)
        store.trials(search_id, states=["running"])
        store.events(search_id, limit=10)
        store.close()
        reads += 1
        assert sum(counts.values()) == total, counts
        if counts["done"] == total:
            break
    print(reads)
    """
)


def _spawn(code: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip


def test_concurrent_workers_and_readers(store_url: str) -> None:
    """Three workers claim and finish trials while two readers poll, on each backend."""
    total = 90
    with Store(store_url) as store:
        s = store.create_search("race", {})
        store.add_trials(s.id, new_trials(total))
    procs = [_spawn(WORKER, store_url, s.id) for _ in range(3)]
    procs += [_spawn(READER, store_url, s.id, total) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert "locked" not in err
    claimed = [i for out, _ in outs[:3] for i in json.loads(out)["claimed"]]
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == total  # each exactly once
    assert all(int(out) >= 1 for out, _ in outs[3:])
    with Store(store_url, readonly=True) as store:
        assert store.counts(s.id)["done"] == total
        assert len(store.results(s.id)) == total and len(store.events(s.id, limit=1000)) == total
        assert all(t.attempts == 1 for t in store.trials(s.id))


HOLDER = textwrap.dedent(
    """
    import sqlite3, sys, time
    con = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, isolation_level=None)
    con.execute("BEGIN")
    n = con.execute("SELECT count(*) FROM trials").fetchone()[0]
    print(n, flush=True)
    time.sleep(float(sys.argv[2]))  # hold the read transaction (and its snapshot) open
    print(con.execute("SELECT count(*) FROM trials").fetchone()[0], flush=True)
    con.execute("COMMIT")
    """
)


def test_a_long_reader_never_blocks_the_writer(sqlite_url: str) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    with Store(sqlite_url) as store:
        s = store.create_search("hold", {})
        store.add_trials(s.id, new_trials(10))
        holder = _spawn(HOLDER, path, 2.5)
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "10"  # the reader's transaction is open
        slowest = 0.0
        for i in range(20):
            t0 = time.perf_counter()
            (t,) = store.add_trials(s.id, new_trials(1, start=100 + i))
            store.finish_trial(t.id, 0.5, {}, [], 1.0)
            slowest = max(slowest, time.perf_counter() - t0)
        assert holder.poll() is None, "the reader finished early: the test proved nothing"
        out, err = holder.communicate(timeout=30)
        assert holder.returncode == 0, err
        assert out.strip() == "10"  # its snapshot did not move while the writer committed
        assert slowest < 1.0, f"a write waited {slowest:.2f} s behind a reader"
        assert store.counts(s.id)["done"] == 20


def test_processes_creating_the_same_new_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code = "import sys; from adsearch.store import Store; Store(sys.argv[1]).create_search(sys.argv[2], {})"
    procs = [_spawn(code, url, f"s{i}") for i in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert current_revision(url) == SCHEMA_HEAD
    with Store(url, readonly=True) as store:
        assert sorted(x.name for x in store.list_searches()) == ["s0", "s1", "s2"]


def test_sqlite_connection_settings(sqlite_url: str) -> None:
    with Store(sqlite_url) as store:
        store.create_search("x", {})
        with store._engine.connect() as conn:  # the settings every pooled connection gets
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    with Store(sqlite_url, readonly=True) as ro, ro._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA query_only").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as con:  # WAL is persistent in the file itself
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
