"""One search, one owner (issue 23 §2), with real processes: two ``start``s of one name at
once leave exactly one search and one daemon, untouched by the loser; a search reached from
a copied run directory cannot get a second live daemon, because the store itself knows its
daemon; a daemon's crash does not use up a trial's ``--max-attempts``; a read-only run
directory is refused with a clear message, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_chaos import clean_error, cli, finished_search, readonly_mount, tree  # noqa: F401
from test_daemon_support import check_exactly_once, cli_env, wait_for

from adsearch.daemon.rundir import RunDir
from adsearch.errors import ConfigError
from adsearch.store import Store


def _start(runs: Path, name: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "adsearch", "start", "--task", "synthetic", "--name", name,
         "--controller", "random", "--workers", "1", "--budget-trials", "3", "--batch-size",
         "3", *extra], cwd=runs.parent, env=cli_env(runs), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def _state(run: RunDir) -> str:
    ident = run.identity()
    assert ident is not None
    with Store(run.store_url(), readonly=True) as st:
        return str(st.get_search(ident["name"]).state)


def test_two_starts_of_one_name_at_once_exactly_one_wins(tmp_path: Path) -> None:
    """The chaos run's race: in 3 of 5 races neither won (both wrote search.json, the
    loser's rollback deleted the winner's, the winner's daemon died). Now, in every race of
    three real `adsearch start` processes: one exits 0, the others exit 1 with a clear
    line and no traceback, and the winner's search runs to its end, its search.json intact."""
    runs = tmp_path / "runs"
    runs.mkdir()
    for race in range(5):
        name = f"race{race}"
        procs = [_start(runs, name) for _ in range(3)]
        ends = [(p.wait(timeout=180), *p.communicate()) for p in procs]
        codes = sorted(code for code, _, _ in ends)
        assert codes == [0, 1, 1], ends
        for code, _out, err in ends:
            if code:
                assert "Traceback" not in err and "error: " in err, err
                assert "already exists" in err, err
        run = RunDir(runs / name)
        assert json.loads(run.identity_file.read_text())["name"] == name
        wait_for(lambda run=run: _state(run) == "finished", 120, f"{name} to finish")  # type: ignore[misc]
        assert "holds no search.json" not in run.log_file.read_text()
        store, search = check_exactly_once(run)
        try:
            assert store.counts(search.id)["done"] >= 3  # (and a re-check stage's, if any)
            assert [s.name for s in store.list_searches()] == [name]
            starts = [e for e in store.events(search.id) if e.kind == "daemon.start"]
            assert len(starts) == 1  # one daemon ever ran it
        finally:
            store.close()
        assert sorted(p.name for p in run.path.iterdir() if p.name.startswith(".")) == []


def _wait_running(run: RunDir, name: str, timeout: float = 120) -> None:
    def running() -> bool:
        with Store(run.store_url(), readonly=True) as st:
            return bool(st.counts(st.get_search(name).id).get("running", 0))
    wait_for(running, timeout, f"a running trial of {name}")


def _kill_daemon(run: RunDir) -> None:
    import os
    import signal

    from adsearch.daemon.rundir import process_identity

    pid = run.daemon_pid()
    assert pid is not None
    ident = process_identity(pid)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: process_identity(pid) != ident, 30, "the daemon to die")


def test_a_copied_run_directory_cannot_run_a_second_daemon(tmp_path: Path) -> None:
    """The chaos run's copy: a run directory copied without its adsearch.db reaches the
    original's store through its search.json, and `resume` from it started a second daemon
    while the original ran (two controllers; the second requeued a trial the first ran).
    The store's daemon lease refuses it: exit 1, a message naming the live daemon and its
    directory; status from the copy says where the search runs; the original ends with
    every result once and no trial requeued."""
    import shutil

    from test_daemon_support import run_cli

    runs = tmp_path / "runs"
    runs.mkdir()
    run_cli(runs, "start", "--task", "synthetic", "--name", "orig", "--controller", "random",
            "--workers", "1", "--budget-trials", "6", "--batch-size", "2", "--task-config",
            '{"sleep": 4.0}', "--no-recheck")
    run = RunDir(runs / "orig")
    _wait_running(run, "orig")
    copy = tmp_path / "copy" / "orig"
    shutil.copytree(run.path, copy, ignore=shutil.ignore_patterns("adsearch.db*"))
    assert RunDir(copy).store_url() == run.store_url()  # the copy reaches the original's store
    res = run_cli(runs, "resume", "orig", "--run-dir", str(copy), check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    err = " ".join(res.stderr.split())
    assert "Traceback" not in res.stderr
    assert "search 'orig' already has a live daemon: pid " in err and str(run.path) in err, err
    res = run_cli(runs, "resume", "orig", "--run-dir", str(copy), "--foreground", check=False)
    assert res.returncode == 1 and "already has a live daemon" in " ".join(res.stderr.split())
    snap = json.loads(run_cli(runs, "status", "orig", "--run-dir", str(copy), "--json").stdout)
    if snap["stored_state"] == "running":  # (the original may have finished meanwhile)
        assert snap["state"] == "running", snap
        assert any("runs from another run directory" in w and str(run.path) in w
                   for w in snap["waiting"]), snap["waiting"]
    wait_for(lambda: _state(run) == "finished", 120, "the original search to finish")
    store, search = check_exactly_once(run)
    try:
        kinds = [e.kind for e in store.events(search.id, limit=1000)]
        assert kinds.count("daemon.start") == 1 and "trial_requeued" not in kinds
        assert store.counts(search.id)["done"] == 6
        assert store.daemon_lease(search.id) is None  # released at exit
    finally:
        store.close()


def test_daemon_kills_do_not_use_up_a_trials_attempts(tmp_path: Path) -> None:
    """A crash of the daemon is not the trial's fault. With --max-attempts 1, a trial whose
    child died with its daemon used to end failed at the next resume; here the daemon is
    killed with SIGKILL twice while a child runs, and every trial still ends done, run to
    the end once (attempts 1), the lost runs requeued uncounted."""
    from test_daemon_support import run_cli

    runs = tmp_path / "runs"
    runs.mkdir()
    run_cli(runs, "start", "--task", "synthetic", "--name", "k", "--controller", "random",
            "--workers", "1", "--budget-trials", "4", "--batch-size", "2", "--max-attempts",
            "1", "--task-config", '{"sleep": 3.0}', "--no-recheck")
    run = RunDir(runs / "k")
    for _ in range(2):
        _wait_running(run, "k")
        _kill_daemon(run)
        run_cli(runs, "resume", "k")
    wait_for(lambda: _state(run) == "finished", 180, "the search to finish")
    store, search = check_exactly_once(run)
    try:
        trials = store.trials(search.id)
        assert [t.state for t in trials] == ["done"] * 4, [(t.state, t.error) for t in trials]
        assert {t.attempts for t in trials} == {1}
        lost = [e for e in store.events(search.id, limit=1000) if e.kind == "trial_requeued"]
        assert len(lost) == 2 and all(e.data["counted"] is False for e in lost), lost
    finally:
        store.close()


def test_lease_holder_liveness_rule() -> None:
    """Same host: the process identity decides (a dead pid, or a pid reused by another
    process, holds nothing); another host: the heartbeat's age against lease_seconds."""
    import os

    from adsearch.daemon.lease import holder_alive, host_name, new_lease
    from adsearch.store.leases import DaemonLease

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from adsearch.daemon.rundir import process_identity

        ident = process_identity(proc.pid)
        assert ident is not None
        mine = DaemonLease(1, "o", host_name(), proc.pid, ident, "/r", 0.0, 0.0)
        assert holder_alive(mine, 60.0)  # its heartbeat is ancient: identity decides
        assert not holder_alive(DaemonLease(1, "o", host_name(), proc.pid, "0:1", "/r", 0, 0),
                                60.0)  # the pid, but another process
    finally:
        proc.kill()
        proc.wait()
    assert not holder_alive(mine, 60.0)  # it died
    now = time.time()
    far = DaemonLease(1, "o", "another-host", 1, "x", "/r", now - 100, now - 10)
    assert holder_alive(far, 60.0, now) and not holder_alive(far, 5.0, now)
    # this process's own earlier daemon object, abandoned: not a live holder
    assert not holder_alive(new_lease(1, "/r"), 60.0) and new_lease(1, "/r").pid == os.getpid()


def test_resume_on_a_read_only_run_directory_is_a_clear_error(
        tmp_path: Path, readonly_mount: Any) -> None:  # noqa: F811 (the fixture)
    """`resume --budget-trials` on read-only media printed a traceback (OSError: [Errno 30]
    on daemon.log). Now: one error line saying the directory cannot be written and where to
    resume, exit 1, in the background and in the foreground, and nothing written."""
    import shutil

    runs = tmp_path / "runs"
    finished_search(runs, "r", trials=2)
    archive = tmp_path / "archive"
    shutil.copytree(runs, archive)
    ro = readonly_mount(archive)
    before = tree(archive)
    for extra in ([], ["--foreground"]):
        res = cli(ro, "resume", "r", "--budget-trials", "5", *extra)
        clean_error(res, "cannot be written (Read-only file system)", "--run-dir COPY")
    res = cli(ro, "status", "r", "--json")  # reading it still works
    assert res.exit_code == 0 and json.loads(res.stdout)["state"] == "finished"
    assert tree(archive) == before


def test_weak_messages_name_the_problem(tmp_path: Path) -> None:
    """The chaos run's weak messages: a directory given as --pattern ("does not exist"),
    --space nosuch-9 ("SearchSpace.kind"), resume --budget-trials -1 ("give a larger
    total")."""
    runs = tmp_path / "runs"
    finished_search(runs, "s", trials=2)
    clean_error(cli(runs, "train", "--task", "synthetic", "--pattern", str(tmp_path)),
                f"pattern file {tmp_path} is a directory", "adsearch export --best -o FILE")
    for space, what in (("nosuch-9", "unknown kind 'nosuch'"), ("conv-0", "no site")):
        res = cli(runs, "start", "--task", "synthetic", "--name", "x", "--space", space)
        clean_error(res, f"--space: invalid space name {space!r}: {what}", "conv-K", "seq-K")
        assert "SearchSpace." not in res.stderr and not (runs / "x").exists()
    for value in ("-1", "0"):
        clean_error(cli(runs, "resume", "s", "--budget-trials", value),
                    f"--budget-trials: {value} is no number of trials", "more than the 2 trials")
    clean_error(cli(runs, "resume", "s", "--budget-minutes", "-5"),
                "--budget-minutes: -5.0 is no budget")


class _LateIdentity(RunDir):
    """A run directory read at the moment of the race: the first read of search.json comes
    just before a racing `start` links it (and writes its store), later reads find it."""

    reads = 0

    def identity(self) -> dict[str, Any] | None:
        self.reads += 1
        return None if self.reads == 1 else super().identity()


def test_a_start_that_reads_just_before_the_winner_claims_sees_its_search(
        tmp_path: Path) -> None:
    """The race CI hit once: the loser read no search.json, then listed the directory after
    the winner had claimed it and written its store, and said "not empty and holds no
    search.json" instead of "already exists". It now reads search.json again."""
    run = RunDir(tmp_path / "race")
    assert run.claim_new("race", run.default_store_url)
    (run.path / "adsearch.db").write_bytes(b"")
    _LateIdentity(run.path).check_belongs_to("race")  # the same name: no error here
    with pytest.raises(ConfigError, match="belongs to search 'race', not 'other'"):
        _LateIdentity(run.path).check_belongs_to("other")
    (run.identity_file).unlink()
    with pytest.raises(ConfigError, match="is not empty and holds no search.json"):
        _LateIdentity(run.path).check_belongs_to("race")
