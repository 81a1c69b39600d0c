"""Daemon liveness from the process's identity, never from a pid alone (issue 13 §1).

After a kill -9, ``daemon.pid`` stays behind. When the OS gives that pid to an unrelated
process, ``status``, ``list``, ``stop`` and ``resume`` must still see a dead daemon, and
``stop`` must never signal the stranger.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from test_daemon_support import alive, daemon_pid, run_cli, wait_for

from adsearch.daemon.rundir import RunDir, process_identity, shown_state


def _stranger() -> subprocess.Popen[bytes]:
    """An unrelated process in its own session (what `setsid sleep 1000 &` starts)."""
    return subprocess.Popen(["sleep", "1000"], start_new_session=True)


def test_process_identity_tells_a_reused_pid_from_the_daemon() -> None:
    me = process_identity(os.getpid())
    assert me is not None and me == process_identity(os.getpid())
    other = _stranger()
    try:
        assert process_identity(other.pid) not in (None, me)
    finally:
        other.kill()
        other.wait()
    assert process_identity(other.pid) is None


def test_shown_state_calls_a_daemonless_running_search_crashed() -> None:
    assert shown_state("running", live=False) == "crashed"
    assert shown_state("stopping", live=False) == "crashed"
    assert shown_state("running", live=True) == "running"
    assert shown_state("finished", live=False) == "finished"


def test_stale_pid_file_naming_a_stranger_is_dead_everywhere(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_dir = runs / "r"
    run_cli(runs, "start", "--task", "synthetic", "--task-config", '{"sleep": 0.5}',
            "--workers", "1", "--budget-trials", "200", "--name", "r")
    run = RunDir(run_dir)
    pid = daemon_pid(run_dir)
    assert pid is not None
    real = run.pid_file.read_text().split()
    assert real[0] == str(pid) and real[1] == process_identity(pid)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), 10, "the daemon to die")
    stranger = _stranger()
    try:
        # the reproduction (a bare pid), then a forged file with the dead daemon's
        # identity: neither may make the stranger look like the daemon
        for text in (f"{stranger.pid}\n", f"{stranger.pid} {real[1]}\n"):
            run.pid_file.write_text(text)
            assert run.daemon_pid() is None
            snap = json.loads(run_cli(runs, "status", "r", "--json").stdout)
            assert snap["daemon"]["alive"] is False and snap["state"] == "crashed", snap
            listed = run_cli(runs, "list").stdout
            assert "crashed" in listed and f"pid {stranger.pid}" not in listed, listed
            stop = run_cli(runs, "stop", "r", check=False)
            assert stop.returncode == 0 and "is not running (state crashed)" in stop.stdout, stop
            assert "adsearch resume r" in stop.stdout
            assert stranger.poll() is None, "stop signalled an unrelated process"
        # resume is not refused by the stale file; the new daemon rewrites it, and stop
        # signals that daemon (and only it)
        run_cli(runs, "resume", "r")
        new = daemon_pid(run_dir)
        assert new is not None and new != stranger.pid
        run_cli(runs, "stop", "r", "--now")
        assert daemon_pid(run_dir) is None and not alive(new)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
