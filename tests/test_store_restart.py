"""A PostgreSQL restart costs a retry, not a crash (issue 13 §2): the store rides out a lost
connection (adsearch/store/retry.py), and a daemon with a worker on another "host" finishes
its search across a real ``pg_ctl restart`` with every result kept and none counted twice.

These tests run their own throw-away server (they restart it), so they need the PostgreSQL
binaries; they skip, with the reason, where those are missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_backends import _fresh_database, _PgServer
from test_daemon_support import cli_env

from adsearch.daemon.config import SearchConfig
from adsearch.daemon.launch import create_search, spawn_detached
from adsearch.daemon.rundir import RunDir, pid_alive
from adsearch.errors import StoreUnavailable
from adsearch.store import Store


@pytest.fixture
def server() -> Iterator[tuple[_PgServer, str]]:
    pytest.importorskip("psycopg", reason="pip install 'adsearch[postgres]' to test PostgreSQL")
    srv = _PgServer()
    base = srv.acquire()
    try:
        yield srv, next(_fresh_database(base))
    finally:
        srv.release()


def test_store_calls_wait_for_the_server_to_come_back(server: tuple[_PgServer, str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    srv, url = server
    with Store(url) as st:
        sid = st.create_search("r", {}).id
        st.log_event(sid, "before", "before the restart")
        # down for 2 s while calls are made: each is retried until the server is back
        t = threading.Thread(target=srv.restart, kwargs={"down_seconds": 2.0})
        t.start()
        time.sleep(0.5)
        calls = 0
        while t.is_alive():
            st.log_event(sid, "during", f"call {calls}")
            calls += 1
            time.sleep(0.2)
        t.join()
        assert st.get_search("r").state == "created"
        kinds = [e.kind for e in st.events(sid, 1000)]
        assert kinds.count("during") == calls and calls >= 1
        # with no retry budget a lost server is a clear StoreError, not a hang or a traceback
        monkeypatch.setenv("ADSEARCH_DB_RETRY_SECONDS", "0")
        t = threading.Thread(target=srv.restart, kwargs={"down_seconds": 2.0})
        t.start()
        time.sleep(1.0)
        with pytest.raises(StoreUnavailable, match="postgresql"):
            st.set_search_state(sid, "running")
        t.join()
        monkeypatch.delenv("ADSEARCH_DB_RETRY_SECONDS")
        assert st.set_search_state(sid, "running").state == "running"


def test_search_with_a_worker_survives_pg_ctl_restart(server: tuple[_PgServer, str],
                                                      tmp_path: Path) -> None:
    srv, url = server
    cfg = SearchConfig(name="rs", task="synthetic", controller="random", workers=1,
                       budget_trials=12, batch_size=2, task_config={"sleep": 0.6})
    run = create_search(cfg, RunDir(tmp_path / "run"), store_url=url)
    env = cli_env(tmp_path / "runs")
    worker = subprocess.Popen(
        [sys.executable, "-m", "adsearch", "worker", "--store", url, "--search", "rs",
         "--workers", "1", "--work-dir", str(tmp_path / "w")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    daemon_pid = spawn_detached(run)
    try:
        with Store(url, readonly=True) as st:
            sid = st.get_search("rs").id
            deadline = time.time() + 60
            while st.counts(sid).get("done", 0) < 3 and time.time() < deadline:
                time.sleep(0.1)
            assert st.counts(sid).get("done", 0) >= 3
            srv.restart(down_seconds=3.0)  # children keep running; the store is gone for 3 s
            assert pid_alive(daemon_pid) and worker.poll() is None, "a process died on the restart"
            deadline = time.time() + 45  # 12 children of 0.6 s take ~10 s
            while st.get_search("rs").state != "finished" and time.time() < deadline:
                time.sleep(0.2)
            if st.get_search("rs").state != "finished":
                worker.send_signal(signal.SIGKILL)
                raise AssertionError(f"{st.counts(sid)}\n{run.log_file.read_text()[-3000:]}\n"
                                     f"worker:\n{worker.stderr.read()[-3000:] if worker.stderr else ''}\n"
                                     f"server:\n{(srv._stop[2] / 'server.log').read_text()[-3000:]}")
            c = st.counts(sid)  # 12 search trials, then the re-check (issue 19 §5)
            searched = {t.id for t in st.trials(sid, purposes=["search"])}
            assert len(searched) == 12 and c.get("done") == len(st.trials(sid)), c
            assert not c.get("failed"), c
            assert len(st.results(sid)) == c.get("done")  # every finished result kept, none twice
            assert st.consumed_trial_ids(sid) == searched
        assert worker.poll() is None or worker.returncode == 0, worker.stderr.read() if worker.stderr else ""
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        if pid_alive(daemon_pid):
            os.kill(daemon_pid, signal.SIGKILL)


def test_every_method_that_opens_a_session_is_retried() -> None:
    """The daemon once died on a restart in ``len(queue)``: ``DbQueue.__len__`` opened a
    session but, being a special method, was not wrapped. Every method of the store and queue
    classes whose source opens a session must be wrapped by ``retried``."""
    import inspect

    from adsearch.queue.dbqueue import DbQueue
    from adsearch.store import rungs, storage, trials

    classes = [DbQueue, *(c for m in (storage, trials, rungs) for _, c in inspect.getmembers(m, inspect.isclass)
                          if c.__module__ == m.__name__)]
    checked = 0
    for cls in classes:
        for name, fn in vars(cls).items():
            if not inspect.isfunction(fn) and not hasattr(fn, "__wrapped__"):
                continue
            try:
                src = inspect.getsource(getattr(fn, "__wrapped__", fn))
            except OSError:  # generated (a dataclass's __eq__): no session in it
                continue
            if "self._session(" in src and not name.startswith("_session"):
                checked += 1
                assert hasattr(fn, "__wrapped__"), f"{cls.__name__}.{name} opens a session but is not retried"
    assert checked > 20 and hasattr(vars(DbQueue)["__len__"], "__wrapped__")


def test_a_retried_finish_whose_first_commit_went_through_returns_the_result(tmp_path: Path) -> None:
    """The ambiguous commit: the result was stored, then the reply was lost. The retry must
    not fail with "already finished" (that would crash the worker holding the result)."""
    from store_backends import new_trials

    from adsearch.errors import StoreError
    from adsearch.store.retry import retried

    with Store(f"sqlite:///{tmp_path / 'a.db'}") as st:
        sid = st.create_search("f", {}).id
        tid = st.add_trials(sid, new_trials(1))[0].id
        st.update_trial(tid, state="running")
        runs = 0

        @retried
        def finish_then_lose_the_reply() -> float:
            nonlocal runs
            runs += 1
            rec = st.finish_trial(tid, 0.5, {}, [], 1.0)
            if runs == 1:
                raise StoreUnavailable("store x: server closed the connection unexpectedly")
            return float(rec.reward)

        assert finish_then_lose_the_reply() == 0.5 and runs == 2
        assert [r.reward for r in st.results(sid)] == [0.5]
        with pytest.raises(StoreError, match="already finished"):  # a true second call
            st.finish_trial(tid, 0.7, {}, [], 1.0)
