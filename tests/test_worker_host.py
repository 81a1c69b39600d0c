"""Where a worker's trial runs is recorded (issue 13 §2): ``status`` names the worker (host
and pid) and its slot instead of the daemon's ``cpu0``, says that trials on live workers are
left to them when the daemon is dead, and ``show`` points at the log on the worker's host."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_backends import *  # noqa: F403  (fixtures: pg_base_url)
from store_backends import _fresh_database
from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.daemon.config import SearchConfig
from adsearch.daemon.launch import create_search, spawn_detached
from adsearch.daemon.rundir import RunDir, pid_alive
from adsearch.queue.dbqueue import DbQueue
from adsearch.store import Store

runner = CliRunner()


@pytest.fixture
def pg_url(pg_base_url: str) -> Iterator[str]:
    yield from _fresh_database(pg_base_url)


def _status(run: RunDir) -> dict:
    res = runner.invoke(app, ["status", "--run-dir", str(run.path), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _search_with_a_worker(cfg: SearchConfig, url: str,
                          tmp_path: Path) -> tuple[RunDir, subprocess.Popen[str], int]:
    """Create the search, start one `adsearch worker` process on it, then its daemon."""
    run = create_search(cfg, RunDir(tmp_path / "run"), store_url=url)
    worker = subprocess.Popen([sys.executable, "-m", "adsearch", "worker", "--store", url,
                               "--search", cfg.name, "--workers", "1", "--work-dir", str(tmp_path / "w")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return run, worker, spawn_detached(run)


def test_status_and_show_name_the_worker_host(pg_url: str, tmp_path: Path) -> None:
    # the daemon's own slot is busy with long children, so the worker takes the others
    cfg = SearchConfig(name="hosts", task="synthetic", controller="random", workers=1,
                       budget_trials=4, batch_size=2, task_config={"sleep": 6.0})
    run, worker, daemon_pid = _search_with_a_worker(cfg, pg_url, tmp_path)
    try:
        with Store(pg_url, readonly=True) as st:
            sid = st.get_search("hosts").id
            deadline = time.time() + 60
            held = None
            while held is None and time.time() < deadline:
                held = next((le for le in DbQueue(st, sid).leases() if le.owner.startswith("worker-")
                             and st.get_trial(le.trial_id).state == "running"), None)
                time.sleep(0.05)
            assert held is not None, "the worker never ran a trial"
            row = next(r for r in _status(run)["running"] if r["trial_id"] == held.trial_id)
            assert row["worker"] == held.owner and socket.gethostname() in held.owner
            assert row["slot_name"] == f"{held.owner}/{held.slot}", row
            os.kill(daemon_pid, signal.SIGKILL)  # the worker goes on; resume would leave it be
            deadline = time.time() + 10
            while pid_alive(daemon_pid) and time.time() < deadline:
                time.sleep(0.05)
            assert st.get_trial(held.trial_id).state == "running"  # a 6 s child, found at once
            snap = _status(run)
            assert any("1 trial(s) run on live workers" in w for w in snap["waiting"]), snap["waiting"]
            deadline = time.time() + 60
            while st.get_trial(held.trial_id).state == "running" and time.time() < deadline:
                time.sleep(0.1)
            assert st.get_trial(held.trial_id).state == "done"
        res = runner.invoke(app, ["show", "--run-dir", str(run.path), str(held.trial_id), "--json"])
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout)
        [placed] = doc["placements"]
        assert placed["host"] == socket.gethostname() and placed["owner"] == held.owner
        assert Path(placed["log"]).is_file() and str(tmp_path / "w") in placed["log"]
        assert f"{placed['host']}:{placed['log']}" in doc["logs"]
    finally:
        if worker.poll() is None:
            worker.kill()
        if pid_alive(daemon_pid):
            os.kill(daemon_pid, signal.SIGKILL)


def test_budget_minutes_waits_for_trials_on_workers(pg_url: str, tmp_path: Path) -> None:
    """When the wall-time budget runs out, trials running on a worker finish and count; only
    trials that never ran are stale (issue 13 §2: they used to be killed as "lease revoked"
    and labelled "budget spent before it ran")."""
    cfg = SearchConfig(name="bm", task="synthetic", controller="random", workers=1,
                       budget_minutes=0.3, batch_size=2, lookahead=2, task_config={"sleep": 4.0})
    run, worker, daemon_pid = _search_with_a_worker(cfg, pg_url, tmp_path)
    try:
        with Store(pg_url, readonly=True) as st:
            sid = st.get_search("bm").id
            deadline = time.time() + 120
            while st.get_search("bm").state != "finished" and time.time() < deadline:
                time.sleep(0.2)
            assert st.get_search("bm").state == "finished", run.log_file.read_text()[-2000:]
            trials = st.trials(sid)
            placed = {e.data["trial_id"] for e in st.events(sid, 1000, kinds=["trial.placed"])}
            assert placed, "the worker ran nothing"
            for t in trials:
                if t.started_at is not None:  # it ran: its result counts
                    assert t.state == "done", t
                else:
                    assert t.state == "stale", t
            assert all(t.state == "done" for t in trials if t.id in placed)
        worker.wait(timeout=30)
        err = worker.stderr.read() if worker.stderr else ""
        assert "lease" not in err.lower() or "revoked" not in err.lower(), err[-2000:]
    finally:
        if worker.poll() is None:
            worker.kill()
        if pid_alive(daemon_pid):
            os.kill(daemon_pid, signal.SIGKILL)
