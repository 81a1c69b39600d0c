"""`adsearch worker` against a real PostgreSQL: claims are exclusive, a killed worker loses
nothing (its trial is retried), and the daemon feeds the controller from workers' results."""

from __future__ import annotations

import os
import random
import re
import signal
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
from adsearch.patterns import SearchSpace
from adsearch.patterns.canonical import pattern_hash
from adsearch.queue.dbqueue import DbQueue
from adsearch.store import NewTrial, Store


@pytest.fixture
def pg_url(pg_base_url: str) -> Iterator[str]:
    yield from _fresh_database(pg_base_url)


def _worker(url: str, search: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "adsearch", "worker", "--store", url, "--search", search, *extra]


def _seed(url: str, name: str, n: int) -> None:
    """A running synthetic search with ``n`` queued trials (no daemon: claims only)."""
    space = SearchSpace.from_name("conv-3")
    rng = random.Random(0)
    variants = [[p.to_dict() for p in space.sample(rng)] for _ in range(50)]
    cfg = SearchConfig(name=name, task="synthetic", task_config={"noise_sd": 0.0}, workers=1)
    with Store(url) as st:
        sid = st.create_search(name, cfg.to_dict()).id
        st.set_search_state(sid, "running")
        items = [NewTrial(pattern=variants[i % 50], pattern_hash=pattern_hash(variants[i % 50]),
                          tokens=space.encode([space.pattern_cls.from_dict(p)  # type: ignore[attr-defined]
                                               for p in variants[i % 50]]),
                          controller_version=0, logp=-1.0, seed=i) for i in range(n)]
        ids = [t.id for t in st.add_trials(sid, items)]
        DbQueue(st, sid).push(ids)


def test_two_workers_never_claim_a_trial_twice(pg_url: str, tmp_path: Path) -> None:
    n = 10_050  # over 10,000 claims
    _seed(pg_url, "claims", n)
    # Output goes to files, not pipes: a worker logs a line per claim, and a pipe nobody
    # reads while the test waits on the other worker fills (64 KiB) and stalls that worker,
    # so the two would not claim side by side and the one left would do most of the work.
    logs = [(tmp_path / f"w{i}.out", tmp_path / f"w{i}.err") for i in range(2)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, (out, err) in enumerate(logs):
            with out.open("wb") as fo, err.open("wb") as fe:
                procs.append(subprocess.Popen(
                    _worker(pg_url, "claims", "--inline", "--burst", "-v",
                            "--work-dir", str(tmp_path / f"w{i}")), stdout=fo, stderr=fe))
        # a hang guard, not a speed target (one worker alone takes ~100 s on one busy core)
        deadline = time.monotonic() + 900
        for p in procs:
            try:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                counts = [len(re.findall(r"claimed trial", e.read_text())) for _, e in logs]
                pytest.fail(f"workers still running after 900 s; claims so far {counts} of {n}")
    finally:
        for p in procs:  # never leave a worker behind to lock the next test's database
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    outs = [(o.read_text(), e.read_text()) for o, e in logs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    claimed = [[int(t) for t in re.findall(r"claimed trial (\d+)", err)] for _, err in outs]
    assert all(len(c) > 100 for c in claimed), [len(c) for c in claimed]  # both claimed
    assert not set(claimed[0]) & set(claimed[1])
    assert sorted(claimed[0] + claimed[1]) == list(range(1, n + 1))
    with Store(pg_url, readonly=True) as st:
        sid = st.get_search("claims").id
        assert st.counts(sid)["done"] == n and len(st.results(sid)) == n
        assert {t.attempts for t in st.trials(sid)} == {1}
        assert DbQueue(st, sid).pending() == [] and DbQueue(st, sid).leases() == []


def test_killed_worker_trial_is_retried_by_the_daemon(pg_url: str, tmp_path: Path) -> None:
    cfg = SearchConfig(name="kill", task="synthetic", controller="random", workers=1,
                       budget_trials=4, batch_size=2, lease_seconds=2.0, heartbeat_seconds=0.4,
                       task_config={"sleep": 1.5})
    run = create_search(cfg, RunDir(tmp_path / "run"), store_url=pg_url)
    worker = subprocess.Popen(_worker(pg_url, "kill", "--workers", "1", "--work-dir",
                                      str(tmp_path / "wa")),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    daemon_pid = spawn_detached(run)
    try:
        with Store(pg_url, readonly=True) as st:
            sid, q = st.get_search("kill").id, None
            q = DbQueue(st, sid)
            victim = None
            deadline = time.time() + 60
            while victim is None and time.time() < deadline:
                victim = next((le.trial_id for le in q.leases() if le.owner.startswith("worker-")
                               and st.get_trial(le.trial_id).state == "running"), None)
                time.sleep(0.05)
            assert victim is not None, worker.stderr.read() if worker.poll() is not None else ""
            child_pid = st.get_trial(victim).pid
            os.kill(worker.pid, signal.SIGKILL)  # mid-child: its child dies with it
            worker.wait(timeout=10)
            deadline = time.time() + 90
            while st.get_search("kill").state != "finished" and time.time() < deadline:
                time.sleep(0.2)
            assert st.get_search("kill").state == "finished", run.log_file.read_text()[-3000:]
            trial = st.get_trial(victim)
            assert trial.state == "done" and trial.attempts == 2, trial
            assert child_pid is not None and not pid_alive(child_pid)
            searched = {t.id for t in st.trials(sid, purposes=["search"])}  # + the re-check
            assert st.counts(sid, purposes=["search"])["done"] == 4
            assert st.counts(sid)["failed"] == 0
            assert any(e.kind == "trial_requeued" and e.data.get("trial_id") == victim
                       and "lease of worker-" in e.message for e in st.events(sid, 200))
            assert st.latest_checkpoint(sid) is not None  # the controller got the results
            assert st.consumed_trial_ids(sid) == searched  # re-check runs are no sample
    finally:
        if worker.poll() is None:
            worker.kill()
        if pid_alive(daemon_pid):
            os.kill(daemon_pid, signal.SIGKILL)


def test_worker_refuses_bad_input(tmp_path: Path, pg_url: str) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["worker", "--store", f"sqlite:///{tmp_path / 'a.db'}",
                              "--search", "x", "--workers", "1"])
    assert res.exit_code == 1 and "needs a PostgreSQL store" in res.output
    res = runner.invoke(app, ["worker", "--store", pg_url, "--search", "nope", "--workers", "1"])
    assert res.exit_code == 1 and "no search named 'nope'" in res.output
    res = runner.invoke(app, ["worker", "--store", pg_url, "--search", "x", "--workers", "0"])
    assert res.exit_code == 1 and "--workers: invalid value 0" in res.output
