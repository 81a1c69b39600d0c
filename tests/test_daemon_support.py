"""Helpers for the daemon and CLI tests (no tests here): run the real ``adsearch`` CLI in
subprocesses, wait for conditions, open the store of a run directory, dump a database."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def cli_env(runs: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["ADSEARCH_RUNS"] = str(runs)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.update(extra)
    return env


def run_cli(runs: Path, *args: str, timeout: float = 120, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m adsearch ARGS`` with ``$ADSEARCH_RUNS=runs``; asserts success if ``check``."""
    proc = subprocess.run([sys.executable, "-m", "adsearch", *args], cwd=runs.parent,
                          env=env or cli_env(runs), capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert proc.returncode == 0, f"adsearch {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def open_store(run_dir: Path) -> tuple[Any, Any]:
    from adsearch.daemon.launch import load_search
    from adsearch.daemon.rundir import RunDir

    return load_search(RunDir(run_dir))


def counts(run_dir: Path) -> dict[str, int]:
    store, search = open_store(run_dir)
    try:
        return store.counts(search.id)  # type: ignore[no-any-return]
    finally:
        store.close()


def daemon_pid(run_dir: Path) -> int | None:
    from adsearch.daemon.rundir import RunDir

    return RunDir(run_dir).daemon_pid()


def dump_db(path: Path) -> list[str]:
    """Every row of the database, as SQL (read-only open: it does not change the file)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def alive(pid: int) -> bool:
    from adsearch.daemon.rundir import pid_alive

    return pid_alive(pid)


def check_exactly_once(run: Any) -> tuple[Any, Any]:
    """Every trial terminal, one result per finished trial, each reward consumed once; re-check
    trials (purpose 'recheck') are never consumed: they are no sample of the policy."""
    from adsearch.store import Store

    store = Store(run.store_url(), readonly=True)
    search = store.get_search(run.identity()["name"])  # type: ignore[index]
    trials = store.trials(search.id)
    assert {t.state for t in trials} <= {"done", "failed", "stale"}
    results = store.results(search.id)
    assert len({r.trial_id for r in results}) == len(results)
    finished = {t.id for t in trials if t.state == "done"}
    assert {r.trial_id for r in results if r.reward is not None} == finished
    done = {t.id for t in trials if t.state == "done" and t.purpose != "recheck"}
    assert store.consumed_trial_ids(search.id) == done
    # the store's checkpoint records consumed disjoint sets: no reward was fed twice
    db = Path(run.path) / "adsearch.db"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = [r[0] for r in conn.execute(
            "SELECT ct.trial_id FROM checkpoint_trials ct JOIN checkpoints c "
            "ON c.id = ct.checkpoint_id WHERE c.search_id = ?", (search.id,))]
    finally:
        conn.close()
    assert sorted(rows) == sorted(done), "a trial was consumed twice or never"
    # and the latest controller checkpoint file holds exactly these ids
    from adsearch.controller import read_checkpoint

    ckpts = sorted((Path(run.path) / "checkpoints").glob("ckpt-*.pt"))
    if done:
        assert set(read_checkpoint(ckpts[-1])["consumed_ids"]) == done
    return store, search
