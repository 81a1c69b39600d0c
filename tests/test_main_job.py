"""``make run``'s main job, shrunk: a real AutoDropout search with real CIFAR-10 children
(the cifar10 task on the embedded sample, a tiny WRN, 2 optimizer steps), in the
foreground, then status, export and ``adsearch pattern show`` of the best pattern."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_daemon_support import REPO, check_exactly_once, cli_env

from adsearch.daemon.rundir import RunDir
from adsearch.patterns import load_patternset


def test_main_job_runs_a_real_cifar_search(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bin" / "main_job.py"), "--runs-dir", str(runs),
         "--trials", "2", "--batch-size", "2", "--child-steps", "2",
         "--task-config", '{"train_per_class": 16, "val_per_class": 8, "width": 1}'],
        cwd=tmp_path, env=cli_env(runs), capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = runs.glob("main-cifar10-*")
    out = proc.stdout
    for step in ("adsearch start --task cifar10", "adsearch status", "adsearch export",
                 "adsearch pattern show"):
        assert step in out
    assert "site 0 (32x32 map)" in out  # the block art of the best pattern, at its map size
    store, search = check_exactly_once(RunDir(run_dir))
    try:
        assert search.state == "finished" and store.counts(search.id)["done"] == 2
        for res in store.results(search.id):
            assert res.metrics["steps"] == 2.0 and 0.0 <= res.reward <= 1.0
            assert res.reward == res.metrics["val_acc"]  # the reward is validation accuracy
        best = load_patternset(run_dir / "best.json")
        (top, top_res), = store.top_trials(search.id, 1)
        assert best.provenance.trial_id == top.id and best.provenance.reward == top_res.reward
    finally:
        store.close()
