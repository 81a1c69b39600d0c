"""One settle rule for the daemon's slots and for ``adsearch worker``: the same ended run,
settled by the daemon (:class:`~adsearch.daemon.slotset.SlotsMixin`) and by a worker
(:class:`~adsearch.daemon.hostworker.HostWorker`), on the file queue and on PostgreSQL's,
leaves the trial and the queue alike; only the messages say who ran it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from store_backends import *  # noqa: F403  (fixtures: store_url on sqlite and postgresql)
from store_backends import _fresh_database

from adsearch.daemon.config import SearchConfig
from adsearch.daemon.executors import uses_db_queue
from adsearch.daemon.failures import FailureBreaker
from adsearch.daemon.hostworker import HostWorker
from adsearch.daemon.loop import Daemon
from adsearch.daemon.pruning import Scheduler
from adsearch.daemon.recovery import Outcome
from adsearch.daemon.rundir import RunDir, write_json_atomic
from adsearch.daemon.slots import ChildProcess, Slot
from adsearch.daemon.slotset import child_spec
from adsearch.daemon.stopping import WARM
from adsearch.queue import FileQueue
from adsearch.queue.dbqueue import DbQueue
from adsearch.store import Store

WORKER = "worker-hostb-7"


@pytest.fixture
def pg_url(pg_base_url: str) -> Any:
    yield from _fresh_database(pg_base_url)


CFG = SearchConfig(name="st", task="synthetic", space="conv-3", workers=1, max_attempts=2,
                   failure_reward=-1.0, task_config={"sleep": 30.0})


def _trials(st: Store, sid: int, n: int) -> list[Any]:
    """``n`` trials with valid patterns of the synthetic task's space, so children run."""
    import random

    from adsearch.patterns import SearchSpace
    from adsearch.patterns.canonical import pattern_hash
    from adsearch.store import NewTrial

    space, rng = SearchSpace.from_name("conv-3"), random.Random(0)
    out = []
    for i in range(n):
        sample = space.sample(rng)
        pats = [p.to_dict() for p in sample]
        out.append(NewTrial(pats, pattern_hash(pats), space.encode(sample), 0, -1.0, i))
    return st.add_trials(sid, out)


def _outcome(status: str) -> Outcome | None:
    if status == "lost":
        return None
    reward = 0.6 if status == "ok" else None
    error = None if status == "ok" else f"{status} raised ValueError"
    return Outcome(status, reward, {}, [], 1.0, error, time.time())


def _pair(st: Store, url: str, tmp: Path) -> tuple[Daemon, HostWorker, int]:
    sid = st.create_search(CFG.name, CFG.to_dict()).id
    st.set_search_state(sid, "running")
    queue: Any = (DbQueue(st, sid, lease_seconds=CFG.lease_seconds) if uses_db_queue(url)
                  else FileQueue(tmp / "queue", lease_seconds=CFG.lease_seconds))
    daemon = Daemon(tmp / "d")
    worker = HostWorker(url, CFG.name, work_dir=tmp / "w", owner=WORKER)
    for obj in (daemon, worker):
        obj.store, obj.queue, obj.cfg, obj.search_id = st, queue, CFG, sid
        obj.run = RunDir(tmp / ("d" if obj is daemon else "w"))
        obj.scheduler = Scheduler(CFG, url)
    daemon.breaker = FailureBreaker(None, None, 10)
    return daemon, worker, sid


def _start(st: Store, obj: Any, owner: str, trial: Any, attempts: int,
           sleep: float = 30.0) -> ChildProcess:
    """Lease ``trial`` as ``owner`` and run its child for real (synthetic, ``sleep`` s)."""
    lease = obj.queue.claim(owner, "cpu0")
    assert lease is not None and lease.trial_id == trial.id
    slot = Slot(index=0, gpu=None, threads=1)
    tdir = obj.run.trial_dir(trial.id)
    tdir.mkdir(parents=True, exist_ok=True)
    spec = child_spec(obj, trial, attempts, slot)
    write_json_atomic(tdir / "spec.json", {**spec, "task_config": {**spec["task_config"],
                                                                   "sleep": sleep}})
    child = ChildProcess(slot, trial.id, tdir / "spec.json", tdir / "result.json",
                         tdir / f"attempt-{attempts}.log", 60.0, attempt=attempts)
    st.update_trial(trial.id, state="running", attempts=attempts, pid=child.pid)
    if isinstance(obj, HostWorker):
        obj._claimed_at[trial.id] = lease.claimed_at  # noqa: SLF001 - as _claim does
    return child


def _view(st: Store, queue: Any, tid: int) -> tuple[Any, ...]:
    t = st.get_trial(tid)
    res = st.results(t.search_id, [tid])
    error = (t.error or "").replace(f" on {WORKER}", "").split(" (log: ")[0]
    return (t.state, t.attempts, res[0].reward if res else None, tid in queue.pending(),
            error.replace(str(tid), "ID"))


@pytest.mark.parametrize("status", ["ok", "bad_pattern", "lost", "lost-last", "config", "error"])
def test_daemon_and_worker_settle_alike(status: str, store_url: str, tmp_path: Path) -> None:
    with Store(store_url) as st:
        daemon, worker, sid = _pair(st, store_url, tmp_path)
        a, b = _trials(st, sid, 2)
        daemon.queue.push([a.id, b.id])
        attempts = CFG.max_attempts if status == "lost-last" else 1
        kid_a = _start(st, daemon, "daemon-4242", a, attempts)
        kid_b = _start(st, worker, WORKER, b, attempts)
        for kid in (kid_a, kid_b):
            kid.kill("test: end the run")  # a real exit status for the lost runs
        code_a, code_b = kid_a.reap(), kid_b.reap()
        outcome = _outcome(status.split("-")[0])
        daemon._settle(kid_a, code_a, outcome)  # noqa: SLF001
        worker._settle(b.id, attempts, outcome, code_b, kid_b.kill_reason,  # noqa: SLF001
                       str(kid_b.log_path))
        seen_a, seen_b = _view(st, daemon.queue, a.id), _view(st, daemon.queue, b.id)
        assert seen_a == seen_b
        expected = {"ok": "done", "bad_pattern": "done", "lost": "queued",
                    "lost-last": "failed", "config": "queued", "error": "queued"}[status]
        assert seen_a[0] == expected
        if status in ("config", "error"):  # not a result: requeued, the run not counted
            assert seen_a[1] == 0 and seen_a[3]
            assert daemon.stop_level == worker.stop_level == WARM
            assert daemon.fatal and worker.error
            search = st.get_search_by_id(sid).state
            assert search == ("failed" if status == "error" else "running")
        if status == "lost":
            assert daemon.queue.pending()[:2] == [a.id, b.id]  # first in line
            assert "test: end the run" in (st.get_trial(b.id).error or "")
            assert f"on {WORKER}" in (st.get_trial(b.id).error or "")


def test_daemon_cold_stop_and_worker_stop_interrupt_alike(pg_url: str, tmp_path: Path) -> None:
    # a worker exists only with the database queue: PostgreSQL only
    with Store(pg_url) as st:
        daemon, worker, sid = _pair(st, pg_url, tmp_path)
        worker.store = Store(pg_url)  # shutdown() closes the worker's own store
        a, b, c, d = _trials(st, sid, 4)
        daemon.queue.push([a.id, b.id, c.id, d.id])
        daemon.children = {0: _start(st, daemon, "daemon-4242", a, 1)}
        worker.children = {0: _start(st, worker, WORKER, b, 1)}
        # a child that wrote its result just before the stop: the result is kept
        daemon.children[1] = _start(st, daemon, "daemon-4242", c, 1, sleep=0.0)
        worker.children[1] = _start(st, worker, WORKER, d, 1, sleep=0.0)
        deadline = time.time() + 120
        while time.time() < deadline and any(
                obj.children[1].poll() is None for obj in (daemon, worker)):
            time.sleep(0.05)
        daemon._cold_stop()  # noqa: SLF001
        worker.shutdown()
        assert daemon.children == worker.children == {}
        seen = {t.id: _view(st, daemon.queue, t.id) for t in (a, b, c, d)}
        assert seen[a.id][:4] == seen[b.id][:4] == ("queued", 0, None, True)
        assert seen[c.id][:2] == seen[d.id][:2] == ("done", 1), seen
        assert seen[c.id][2] is not None and seen[d.id][2] is not None
        assert not seen[c.id][3] and not seen[d.id][3]
        assert "interrupted (cold stop); requeued" in (st.get_trial(a.id).error or "")
        assert f"interrupted ({WORKER} stopped); requeued" in (st.get_trial(b.id).error or "")
        assert daemon.queue.leases() == []
