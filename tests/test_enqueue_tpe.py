"""A seeded TPE search as real processes (issue 20 §2, §3): ``--seed-baselines`` and
``--enqueue`` run first and are marked; killed with kill -9 and resumed, the search draws
the same patterns as the same search without the kill."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from test_daemon_support import alive, counts, daemon_pid, open_store, run_cli, wait_for

from adsearch.daemon.enqueue import baseline_grid
from adsearch.patterns import SearchSpace

pytest.importorskip("optuna")

ARGS = ("--task", "synthetic", "--space", "conv2-3", "--controller", "tpe", "--seed-baselines",
        "--workers", "1", "--batch-size", "4", "--budget-trials", "22", "--no-recheck",
        "--seed", "3")


def _trials(run_dir: Path) -> list[tuple[int, str, list[int]]]:
    store, search = open_store(run_dir)
    try:
        return [(t.id, t.purpose, list(t.tokens)) for t in store.trials(search.id)]
    finally:
        store.close()


def _enqueue_file(tmp_path: Path, runs: Path) -> Path:
    out = tmp_path / "spatial.json"
    run_cli(runs, "pattern", "baseline", "spatial", "--rate", "0.3", "--space", "conv2-3",
            "-o", str(out))
    return out


def test_seeded_tpe_search_kill9_resume_draws_what_an_unkilled_one_draws(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    extra = _enqueue_file(tmp_path, runs)
    sleep = ("--task-config", json.dumps({"sleep": 0.4}))
    # the reference: no kill
    run_cli(runs, "start", *ARGS, *sleep, "--enqueue", str(extra), "--name", "ref", "-f",
            timeout=300)
    ref = _trials(runs / "ref")
    grid = baseline_grid(SearchSpace.from_name("conv2-3"))
    n_enq = 1 + len(grid)
    assert [p for _, p, _ in ref[:n_enq]] == ["enqueued"] * n_enq  # they run first
    assert {p for _, p, _ in ref[n_enq:]} == {"search"} and len(ref) == 22
    assert ref[0][2] == SearchSpace.from_name("conv2-3").encode(
        [p for p in __import__("adsearch.patterns", fromlist=["x"]).load_patternset(extra).patterns])
    # the same search, killed with kill -9 once TPE has drawn, then resumed
    run_cli(runs, "start", *ARGS, *sleep, "--enqueue", str(extra), "--name", "k")
    run_dir = runs / "k"
    pid = daemon_pid(run_dir)
    assert pid is not None
    wait_for(lambda: counts(run_dir)["done"] >= n_enq + 5, 120, "TPE's first results")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), 10, "the daemon to be gone")
    before = _trials(run_dir)
    run_cli(runs, "resume", "k")
    wait_for(lambda: daemon_pid(run_dir) is None and counts(run_dir)["done"] >= 22, 240,
             "the resumed search to finish")
    after = _trials(run_dir)
    assert after[: len(before)] == before  # nothing redrawn
    assert len(after) > len(before)  # the resumed daemon drew more
    assert after == ref  # the same draws as without the kill, every one after the resume too
    snap = json.loads(run_cli(runs, "status", "k", "--json").stdout)
    assert any(r.get("purpose") == "enqueued" for r in snap["top"]) or n_enq >= 5


def test_enqueue_refuses_the_other_family_and_seed_baselines_a_v1_space(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    extra = _enqueue_file(tmp_path, runs)
    res = run_cli(runs, "start", "--task", "synthetic", "--space", "conv-3+off", "--enqueue",
                  str(extra), "--name", "x", check=False)
    assert res.returncode != 0 and "written for space conv2-3" in res.stderr
    assert "Traceback" not in res.stderr and not (runs / "x" / "adsearch.db").exists()
    res = run_cli(runs, "start", "--task", "synthetic", "--space", "conv-3", "--seed-baselines",
                  "--name", "y", check=False)
    assert res.returncode != 0 and "--space conv2-3" in res.stderr
    assert not (runs / "y" / "adsearch.db").exists()
