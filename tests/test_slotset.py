"""One owner of the slots (:class:`adsearch.daemon.slotset.SlotSet`) for the daemon and for
``adsearch worker``: claim, stage, start, heartbeat, reap, with real children (synthetic
task, subprocesses), a real store and real queues."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from adsearch.daemon.config import SearchConfig
from adsearch.daemon.executors import LocalExecutor
from adsearch.daemon.hostworker import HostWorker
from adsearch.daemon.loop import Daemon
from adsearch.daemon.pruning import Scheduler
from adsearch.daemon.rundir import RunDir
from adsearch.daemon.slots import Slot
from adsearch.daemon.slotset import SlotSet
from adsearch.errors import StoreError
from adsearch.queue import FileQueue, LeaseLost
from adsearch.queue.dbqueue import DbQueue
from adsearch.store import NewTrial, Store

SLOT = Slot(index=0, gpu=None, threads=1)


def _cfg(sleep: float) -> SearchConfig:
    return SearchConfig(name="slots", task="synthetic", space="conv-3", workers=1,
                        task_config={"sleep": sleep})


def _trials(st: Store, sid: int, n: int) -> list[Any]:
    import random

    from adsearch.patterns import SearchSpace

    space, rng = SearchSpace.from_name("conv-3"), random.Random(0)
    items = []
    for i in range(n):
        sample = space.sample(rng)
        pats = [p.to_dict() for p in sample]
        items.append(NewTrial(pats, f"{i:032x}", space.encode(sample), 0, -1.0, i))
    return st.add_trials(sid, items)


def _host(host: Any, st: Store, queue: Any, cfg: SearchConfig, sid: int, url: str,
          run: Path) -> Any:
    """Give a daemon or a worker what ``initialize`` would (a store, queue, config...)."""
    host.store, host.queue, host.cfg, host.search_id = st, queue, cfg, sid
    host.run, host.scheduler, host.executor = RunDir(run), Scheduler(cfg, url), LocalExecutor()
    return host


def _wait_reap(slots: SlotSet, timeout: float = 120.0) -> list[Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        ended = list(slots.reap(time.time()))
        if ended:
            return ended
        time.sleep(0.05)
    raise AssertionError("no child ended in time")


def test_daemon_and_worker_share_one_slot_owner(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "d")
    worker = HostWorker("postgresql+psycopg://nobody@localhost/none", "s",
                        work_dir=tmp_path / "w", owner="worker-x-1")
    for host, checked in ((daemon, False), (worker, True)):
        assert isinstance(host.slotset, SlotSet) and host.slotset.host is host
        assert host.slotset.owner_checked is checked
        assert host.children is host.slotset.children
    assert daemon.slotset.owner.startswith("daemon-") and worker.slotset.owner == "worker-x-1"


def test_a_trial_through_a_slot_and_a_trial_that_moved(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'adsearch.db'}"
    cfg = _cfg(0.0)
    with Store(url) as st:
        sid = st.create_search(cfg.name, cfg.to_dict()).id
        st.set_search_state(sid, "running")
        a, b = _trials(st, sid, 2)
        queue = FileQueue(tmp_path / "queue", lease_seconds=cfg.lease_seconds)
        queue.push([a.id, b.id])
        daemon = _host(Daemon(tmp_path / "d"), st, queue, cfg, sid, url, tmp_path / "d")
        slots = daemon.slotset
        # claim + stage: leased to the daemon, spec written, held as the slot's next trial
        assert slots.prepare(SLOT)
        assert slots.prepared[0][0].id == a.id and slots.trial_ids() == {a.id}
        lease = queue.lease(a.id)
        assert lease is not None and lease.owner == slots.owner
        assert (daemon.run.trial_dir(a.id) / "spec.json").is_file()
        # start: a real child, the trial running in the store
        child = slots.start(SLOT)
        assert slots.children == {0: child} and slots.prepared == {}
        t = st.get_trial(a.id)
        assert (t.state, t.attempts, t.pid, t.slot) == ("running", 1, child.pid, 0)
        slots.heartbeat(time.time() + cfg.heartbeat_seconds)  # due: renewed, no error
        ((index, ended, code, outcome),) = _wait_reap(slots)
        assert (index, ended, code) == (0, child, 0) and slots.children == {}
        assert outcome is not None and outcome.status == "ok"
        assert slots.busy[0] > 0 and 0 in slots.freed_at
        assert slots.ended(a.id) == lease.claimed_at and a.id not in slots.beats
        # a staged trial that someone else moved before its start: StoreError, nothing left
        assert slots.prepare(SLOT)
        st.finish_trial(b.id, None, {}, [], 0.0, state="stale")
        with pytest.raises(StoreError):
            slots.start(SLOT)
        assert slots.children == {} and queue.lease(b.id) is None and b.id not in queue.pending()
        assert len(slots.latencies) == 1  # the slot's second start, measured from the first end


def test_a_lost_lease_kills_a_workers_child_and_stops_the_daemon(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'adsearch.db'}"
    cfg = _cfg(30.0)
    with Store(url) as st:
        sid = st.create_search(cfg.name, cfg.to_dict()).id
        st.set_search_state(sid, "running")
        a, b = _trials(st, sid, 2)
        queue = DbQueue(st, sid, lease_seconds=cfg.lease_seconds)
        queue.push([a.id, b.id])
        worker = _host(HostWorker(url, cfg.name, work_dir=tmp_path / "w", owner="worker-x-1"),
                       st, queue, cfg, sid, url, tmp_path / "w")
        daemon = _host(Daemon(tmp_path / "d"), st, queue, cfg, sid, url, tmp_path / "d")
        kids = {}
        for host in (worker, daemon):
            assert host.slotset.prepare(SLOT)
            kids[host] = host.slotset.start(SLOT)
        for host in (worker, daemon):  # the daemon gave both leases back (they expired)
            queue.release(kids[host].trial_id)
        later = time.time() + cfg.heartbeat_seconds
        worker.slotset.heartbeat(later)  # a worker's child whose lease is gone: killed
        assert worker.children == {} and kids[worker].kill_reason == "lease revoked"
        assert kids[worker].poll() is not None
        with pytest.raises(LeaseLost):  # the daemon's own leases are never taken: an error
            daemon.slotset.heartbeat(later)
        assert daemon.children == {0: kids[daemon]}
        daemon.slotset.abandon("test over")
        assert daemon.children == {} and kids[daemon].kill_reason == "test over"
