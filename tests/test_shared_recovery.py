"""Daemon recovery with the database queue: trials of live remote workers are left alone,
those of the dead daemon and of expired leases are requeued, and nothing is lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_backends import *  # noqa: F403  (fixtures: pg_base_url)
from store_backends import _fresh_database, new_trials

from adsearch.daemon.config import SearchConfig
from adsearch.daemon.executors import open_queue
from adsearch.daemon.rundir import RunDir
from adsearch.queue.dbqueue import DbQueue
from adsearch.store import Store


@pytest.fixture
def pg_url(pg_base_url: str) -> Iterator[str]:
    yield from _fresh_database(pg_base_url)


def test_reconcile_keeps_live_remote_work(pg_url: str, tmp_path: Path) -> None:
    cfg = SearchConfig(name="r", task="synthetic", workers=1, lease_seconds=10.0)
    with Store(pg_url) as st:
        sid = st.create_search("r", cfg.to_dict()).id
        live, dead_daemon, expired, prepared, lost, done = (
            t.id for t in st.add_trials(sid, new_trials(6)))
        q = DbQueue(st, sid, lease_seconds=10.0)
        q.push([live, dead_daemon, expired, prepared, done])
        q.claim("worker-hostb-7", "cpu0")  # live
        q.claim("daemon-123", "cpu0")  # dead_daemon: the old daemon's own slot
        q.claim("worker-hostc-9", "cpu0")  # expired: its host died
        q.claim("daemon-123", "cpu1")  # prepared (leased, never started)
        for tid in (live, dead_daemon, expired, lost):
            st.update_trial(tid, state="running", attempts=1, pid=1)
        st.update_trial(done, state="running", attempts=1)
        st.finish_trial(done, 0.5, {}, [], 1.0)
        with st._session() as s:  # noqa: SLF001 - age the dead host's lease
            from adsearch.store.models import QueueEntryModel

            s.get(QueueEntryModel, expired).heartbeat_at = time.time() - 60
        queue, stats = open_queue(st, RunDir(tmp_path / "run"), cfg, sid, pg_url)
        assert isinstance(queue, DbQueue)
        assert stats["remote"] == 1 and stats["requeued"] == 3 and stats["dropped"] == 1
        assert st.get_trial(live).state == "running"
        lease = queue.lease(live)
        assert lease is not None and lease.owner == "worker-hostb-7"
        for tid in (dead_daemon, expired, lost, prepared):
            assert st.get_trial(tid).state == "queued" and queue.lease(tid) is None
        assert sorted(queue.pending()) == sorted([dead_daemon, expired, lost, prepared])
        assert queue.lease(done) is None and done not in queue.pending()
