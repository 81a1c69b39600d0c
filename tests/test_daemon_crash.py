"""The detached daemon as a real process: kill -9 it mid-search and resume (nothing lost,
nothing counted twice, no orphan child), warm and cold stops, one daemon per search, and
``status`` polled while the daemon writes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from test_daemon_support import (
    alive,
    check_exactly_once,
    counts,
    daemon_pid,
    open_store,
    run_cli,
    wait_for,
)
from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.daemon.rundir import RunDir


def running_trials(run_dir: Path) -> list[tuple[int, int, int]]:
    """(trial id, child pid, attempts) of the running trials."""
    store, search = open_store(run_dir)
    try:
        return [(t.id, t.pid, t.attempts) for t in store.trials(search.id, states=["running"])
                if t.pid]
    finally:
        store.close()


def wait_exit(run_dir: Path, timeout: float) -> None:
    wait_for(lambda: daemon_pid(run_dir) is None, timeout, "the daemon to exit")


def test_kill9_daemon_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_dir = runs / "k"
    out = run_cli(runs, "start", "--task", "synthetic", "--task-config", '{"sleep": 0.3}',
                  "--workers", "2", "--budget-trials", "16", "--batch-size", "4",
                  "--controller", "transformer", "--name", "k")
    assert "daemon pid" in out.stdout
    pid = daemon_pid(run_dir)
    assert pid is not None
    wait_for(lambda: counts(run_dir)["done"] >= 5 and len(running_trials(run_dir)) == 2, 60,
             "5 results and 2 running children")
    in_flight = running_trials(run_dir)
    os.kill(pid, signal.SIGKILL)
    # no orphans: the children die with the daemon (PR_SET_PDEATHSIG)
    wait_for(lambda: not any(alive(cpid) for _, cpid, _ in in_flight), 10, "children to die")
    wait_for(lambda: not alive(pid), 10, "the daemon to be gone")
    snap = json.loads(run_cli(runs, "status", "k", "--json").stdout)
    assert snap["daemon"]["alive"] is False and snap["state"] == "crashed"
    assert snap["stored_state"] == "running"
    assert any("adsearch resume k" in w for w in snap["waiting"])
    assert snap["counts"]["running"] == len(in_flight)  # the store still says so
    run_cli(runs, "resume", "k")
    wait_exit(run_dir, 90)
    store, search = check_exactly_once(RunDir(run_dir))
    try:
        assert store.get_search("k").state == "finished"
        assert store.counts(search.id, purposes=["search"])["done"] == 16  # then the re-check
        for tid, _, attempts in in_flight:  # requeued and rerun (or salvaged) exactly once
            t = store.get_trial(tid)
            assert t.state == "done" and t.attempts in (attempts, attempts + 1)
        starts = [e for e in store.events(search.id, limit=1000) if e.kind == "daemon.start"]
        assert len(starts) == 2
        rec = starts[1].data["recovery"]
        assert rec["requeued"] + rec["salvaged"] == len(in_flight)
    finally:
        store.close()


def test_warm_stop_cold_stop_second_daemon_and_resume(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_dir = runs / "w"
    # children of 4 s and 8 trials: the resumed daemon must still run (>= 12 s of work left)
    # when the second `resume` arrives, even on a loaded machine
    run_cli(runs, "start", "--task", "synthetic", "--task-config", '{"sleep": 4.0}',
            "--workers", "2", "--budget-trials", "8", "--batch-size", "2",
            "--controller", "random", "--name", "w")
    wait_for(lambda: len(running_trials(run_dir)) == 2, 60, "2 running children")
    first = running_trials(run_dir)
    # warm stop (SIGTERM): no new trials, the running ones finish as results
    out = run_cli(runs, "stop", "w", "--timeout", "0.2")  # returns while children finish
    text = " ".join(out.stdout.split())
    assert "warm stop sent" in text and "still waits for its running trials" in text
    wait_exit(run_dir, 60)
    store, search = open_store(run_dir)
    try:
        assert store.get_search("w").state == "stopped"
        for tid, _, _ in first:
            t = store.get_trial(tid)
            assert t.state == "done" and t.attempts == 1
        c = store.counts(search.id)
        assert c["running"] == 0 and c["done"] >= 2 and c["queued"] >= 1
    finally:
        store.close()
    # resume, then cold stop: children killed, their trials requeued (attempt not counted)
    run_cli(runs, "resume", "w")
    # a second daemon on the same search refuses, naming the running one
    pid = daemon_pid(run_dir)
    second = run_cli(runs, "resume", "w", check=False)
    assert second.returncode == 1 and f"already running (daemon pid {pid})" in second.stderr
    assert "Traceback" not in second.stderr
    # a new budget is refused while a daemon runs, with nothing written (8 trials at the end)
    more = run_cli(runs, "resume", "w", "--budget-trials", "20", check=False)
    assert more.returncode == 1 and "has a running daemon; stop it first" in " ".join(more.stderr.split())
    wait_for(lambda: len(running_trials(run_dir)) == 2, 60, "2 running children again")
    second_batch = running_trials(run_dir)
    run_cli(runs, "stop", "w", "--now")
    assert not any(alive(cpid) for _, cpid, _ in second_batch)
    store, search = open_store(run_dir)
    try:
        (ev,) = [e for e in store.events(search.id, limit=1000) if e.kind == "daemon.cold_stop"]
        requeued = ev.data["requeued"]
        assert requeued
        # A child of the snapshot may finish (and the next trial start) before the stop
        # arrives on a loaded machine: every snapshot trial is then requeued or done.
        for tid in {tid for tid, _, _ in second_batch} - set(requeued):
            assert store.get_trial(tid).state == "done"
        for tid in requeued:
            t = store.get_trial(tid)
            assert t.state == "queued" and t.attempts == 0 and "cold stop" in (t.error or "")
        assert store.counts(search.id)["running"] == 0
        assert store.get_search("w").state == "stopped"
    finally:
        store.close()
    run_cli(runs, "resume", "w")
    wait_exit(run_dir, 90)
    store, search = check_exactly_once(RunDir(run_dir))
    try:
        assert store.counts(search.id, purposes=["search"])["done"] == 8  # then the re-check
        assert store.get_search("w").state == "finished"
    finally:
        store.close()


def test_status_polled_while_the_daemon_writes_never_sees_a_lock(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_dir = runs / "p"
    run_cli(runs, "start", "--task", "synthetic", "--workers", "2", "--budget-trials", "40",
            "--batch-size", "2", "--lookahead", "4", "--controller", "random", "--name", "p")
    runner = CliRunner()
    env = {"ADSEARCH_RUNS": str(runs)}
    polls = 0
    seen_running = False
    while daemon_pid(run_dir) is not None or polls == 0:
        res = runner.invoke(app, ["status", "p", "--json"], env=env)
        assert res.exit_code == 0, res.output
        assert "locked" not in res.output
        snap = json.loads(res.stdout)
        seen_running |= snap["daemon"]["alive"] and snap["counts"]["running"] > 0
        polls += 1
        text = runner.invoke(app, ["status", "p"], env=env)
        assert text.exit_code == 0 and "locked" not in text.output, text.output
    assert polls >= 10 and seen_running
    store, search = check_exactly_once(RunDir(run_dir))
    store.close()
