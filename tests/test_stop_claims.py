"""A warm stop writes ``stopping`` to the store at once, while running children finish, so
workers on other hosts stop claiming at that moment (issue 13 §2)."""

from __future__ import annotations

from pathlib import Path

from test_daemon_support import open_store, run_cli, wait_for

from adsearch.queue.dbqueue import DbQueue


def _state(run_dir: Path) -> str:
    store, search = open_store(run_dir)
    try:
        return str(store.get_search_by_id(search.id).state)
    finally:
        store.close()


def test_warm_stop_is_stopping_in_the_store_until_children_finish(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_dir = runs / "s"
    run_cli(runs, "start", "--task", "synthetic", "--task-config", '{"sleep": 3.0}',
            "--workers", "1", "--budget-trials", "50", "--name", "s")
    wait_for(lambda: _state(run_dir) == "running", 60, "the search to run")
    store, search = open_store(run_dir)
    try:
        wait_for(lambda: store.counts(search.id).get("running", 0) == 1, 60, "a running child")
    finally:
        store.close()
    run_cli(runs, "stop", "s", "--no-wait")
    wait_for(lambda: _state(run_dir) == "stopping", 10, "the stopping state", interval=0.05)
    from adsearch.store import Store

    store, search = open_store(run_dir)
    url = store.url
    store.close()
    with Store(url) as rw:  # what a worker on another host would try meanwhile
        queue = DbQueue(rw, search.id, lease_seconds=10.0)
        queued = [t.id for t in rw.trials(search.id, states=["queued"])]
        assert queued, "the daemon keeps a trial queued ahead of its slot"
        queue.push(queued[:1])
        assert queue.claim("worker-elsewhere", "cpu0") is None
        queue.discard(queued[:1])
    wait_for(lambda: _state(run_dir) == "stopped", 60, "the warm stop to end")
