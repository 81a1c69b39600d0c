"""One recovery rule for both queues: the same crash scenario, reconciled at daemon start on
the file queue (SQLite store) and on the database queue (PostgreSQL store), ends the same
way. The only difference allowed is the one the database queue exists for: a live
``adsearch worker`` lease is left to its worker (tests/test_shared_recovery.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from store_backends import *  # noqa: F403  (fixtures: store_url on sqlite and postgresql)
from store_backends import new_trials

from adsearch.atomic import write_json_atomic
from adsearch.daemon.config import SearchConfig
from adsearch.daemon.executors import open_queue, uses_db_queue
from adsearch.daemon.rundir import RunDir
from adsearch.queue import FileQueue
from adsearch.queue.dbqueue import DbQueue
from adsearch.store import Store


def _queue(st: Store, run: RunDir, sid: int, url: str, lease_seconds: float) -> Any:
    """The queue open_queue will reopen: rows for PostgreSQL, files for SQLite."""
    if uses_db_queue(url):
        return DbQueue(st, sid, lease_seconds=lease_seconds)
    return FileQueue(run.queue_dir, lease_seconds=lease_seconds)


def _crash_scenario(st: Store, run: RunDir, url: str, cfg: SearchConfig) -> dict[str, int]:
    """What a daemon killed mid-search leaves behind, one trial per rule of recovery."""
    sid = st.create_search(cfg.name, cfg.to_dict()).id
    ids = [t.id for t in st.add_trials(sid, new_trials(9))]
    names = ["salvage", "lost", "spent", "prepared", "finished", "worker", "orphan",
             "stale_pending", "waiting"]
    t = dict(zip(names, ids, strict=True))
    q = _queue(st, run, sid, url, cfg.lease_seconds)
    q.push([t[n] for n in ("salvage", "lost", "prepared", "finished", "worker")])
    for n in ("salvage", "lost", "prepared", "finished"):
        assert q.claim("daemon-4242", "cpu0").trial_id == t[n]
    assert q.claim("worker-hostb-7", "cpu0").trial_id == t["worker"]
    q.push([t["stale_pending"], t["waiting"]])
    for n in ("salvage", "lost", "worker"):
        st.update_trial(t[n], state="running", attempts=1, pid=1)
    st.update_trial(t["spent"], state="running", attempts=cfg.max_attempts, pid=1)
    for n in ("finished", "stale_pending"):
        st.update_trial(t[n], state="running", attempts=1)
        st.finish_trial(t[n], 0.5, {}, [], 1.0)
    tdir = run.trial_dir(t["salvage"])
    tdir.mkdir(parents=True)
    write_json_atomic(tdir / "result.json", {
        "trial_id": t["salvage"], "attempt": 1, "status": "ok", "reward": 0.75,
        "metrics": {}, "curve": [], "seconds": 2.0, "error": None, "ended_at": time.time()})
    return {**t, "sid": sid}


def test_reconcile_is_one_rule_on_both_queues(store_url: str, tmp_path: Path) -> None:
    # lease_seconds small and waited out: the worker's lease has expired, so the database
    # queue has nothing to leave alone and both queues must end exactly alike
    cfg = SearchConfig(name="rec", task="synthetic", workers=1, max_attempts=2,
                       lease_seconds=0.4, heartbeat_seconds=0.1)
    run = RunDir(tmp_path / "run")
    with Store(store_url) as st:
        t = _crash_scenario(st, run, store_url, cfg)
        time.sleep(0.6)
        queue, stats = open_queue(st, run, cfg, t["sid"], store_url)
        assert stats == {"salvaged": 1, "requeued": 3, "failed": 0, "pushed": 1,
                         "dropped": 2, "remote": 0}
        state = {n: st.get_trial(t[n]).state for n in t if n != "sid"}
        assert state == {"salvage": "done", "lost": "queued", "spent": "queued",
                         "prepared": "queued", "finished": "done", "worker": "queued",
                         "orphan": "queued", "stale_pending": "done", "waiting": "queued"}
        assert st.results(t["sid"], [t["salvage"]])[0].reward == 0.75
        # requeued and released trials, then the one the queue lost, go ahead of later draws
        assert queue.pending() == [t["lost"], t["spent"], t["worker"], t["prepared"],
                                   t["orphan"], t["waiting"]]
        assert queue.leases() == []
        assert "lost when worker-hostb-7 stopped" in (st.get_trial(t["worker"]).error or "")
        assert "lost when the daemon stopped" in (st.get_trial(t["lost"]).error or "")
        # a run lost with its daemon is not counted (issue 23 §2): the trial that had used
        # its last attempt is requeued, not failed; a worker's lost run counts
        assert [st.get_trial(t[n]).attempts for n in ("lost", "spent", "worker")] == [
            0, cfg.max_attempts - 1, 1]
        assert "not counted" in (st.get_trial(t["spent"]).error or "")


def test_live_worker_lease_is_the_one_difference(store_url: str, tmp_path: Path) -> None:
    # the same scenario with leases still live: only the database queue can hold a live
    # worker's lease (no worker claims from a run directory's files), and only it keeps it
    cfg = SearchConfig(name="rec", task="synthetic", workers=1, max_attempts=2,
                       lease_seconds=60.0)
    run = RunDir(tmp_path / "run")
    with Store(store_url) as st:
        t = _crash_scenario(st, run, store_url, cfg)
        queue, stats = open_queue(st, run, cfg, t["sid"], store_url)
        shared = uses_db_queue(store_url)
        assert stats["remote"] == (1 if shared else 0)
        assert stats["requeued"] == (2 if shared else 3)
        assert st.get_trial(t["worker"]).state == ("running" if shared else "queued")
        lease = queue.lease(t["worker"])
        assert (lease is not None and lease.owner == "worker-hostb-7") == shared
        expected = [t["lost"], t["spent"], t["prepared"], t["orphan"], t["waiting"]]
        if not shared:
            expected.insert(2, t["worker"])
        assert queue.pending() == expected


def _expired_worker_leases(st: Store, run: RunDir, url: str, cfg: SearchConfig,
                           name: str) -> tuple[Any, int, dict[str, int]]:
    """A worker that died holding a running trial, a claimed one and a finished one."""
    sid = st.create_search(name, cfg.to_dict()).id
    st.set_search_state(sid, "running")
    t = dict(zip(["running", "claimed", "finished", "waiting"],
                 [x.id for x in st.add_trials(sid, new_trials(4))], strict=True))
    q = _queue(st, run, sid, url, cfg.lease_seconds)
    q.push([t["running"], t["claimed"], t["finished"], t["waiting"]])
    for n in ("running", "claimed", "finished"):
        assert q.claim("worker-hostc-9", "cpu0").trial_id == t[n]
    st.update_trial(t["running"], state="running", attempts=1, pid=1)
    st.update_trial(t["finished"], state="running", attempts=1)
    st.finish_trial(t["finished"], 0.5, {}, [], 1.0)
    return q, sid, t


def test_running_daemon_and_restarted_daemon_settle_dead_leases_alike(
        store_url: str, tmp_path: Path) -> None:
    # the same leases of a dead worker, found expired by a running daemon's lease scan and
    # by a daemon's start-up recovery, end alike (two copies of this rule had drifted)
    from adsearch.daemon.loop import Daemon

    cfg = SearchConfig(name="a", task="synthetic", workers=1, lease_seconds=0.4,
                       heartbeat_seconds=0.1)
    ends = []
    for how in ("scan", "start"):
        run = RunDir(tmp_path / how)
        with Store(store_url) as st:
            q, sid, t = _expired_worker_leases(st, run, store_url, cfg, how)
            time.sleep(0.6)
            if how == "scan":
                daemon = Daemon(run.path)
                daemon.store, daemon.queue, daemon.cfg, daemon.search_id = st, q, cfg, sid
                daemon._heartbeat(time.time())  # noqa: SLF001 - its expired-lease scan
            else:
                q, _ = open_queue(st, run, cfg, sid, store_url)
            ends.append(([(st.get_trial(t[n]).state, st.get_trial(t[n]).attempts)
                          for n in t], [list(t.values()).index(x) for x in q.pending()],
                         q.leases()))
    assert ends[0] == ends[1]
    states, pending, leases = ends[0]
    assert states == [("queued", 1), ("queued", 0), ("done", 1), ("queued", 0)]
    assert pending == [0, 1, 3] and leases == []
