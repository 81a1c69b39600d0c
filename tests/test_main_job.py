"""``make run``'s main job, shrunk: a real AutoDropout search with real CIFAR-10 children
(the cifar10 task on the embedded sample, a tiny WRN, 2 optimizer steps), in the
foreground with its output piped (so: progress lines), then what the numbers are, export
and ``adsearch pattern show`` of the best pattern. The controller learns inside it: later
trials are drawn by updated versions (issue 23 §3)."""

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
         "--trials", "8", "--batch-size", "2", "--child-steps", "2",
         "--task-config", '{"train_per_class": 16, "val_per_class": 8, "width": 1}'],
        cwd=tmp_path, env=cli_env(runs), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = runs.glob("main-cifar10-*")
    out = proc.stdout
    for step in ("adsearch start --task cifar10", "--max-ahead 4", "adsearch export",
                 "adsearch pattern show"):
        assert step in out
    # piped: progress lines as trials end and the controller learns, the final table once
    # (the main job no longer runs `status` after it: that printed the table twice)
    assert "(drawn by controller v0)" in out and "controller v2: learned from trials" in out
    assert sum(ln.startswith("top ") for ln in out.splitlines()) == 1
    assert "\nWhat the numbers are:" in out and "v0 (untrained: uniform random)" in out
    assert "How much is noise: one accuracy on 80 images" in out
    # the re-check of the top 2 patterns on 1 more seed, said before it runs (issue 19 §5)
    assert "then re-checks its top 2 pattern(s) on 1 more seed(s) each" in out
    assert "re-check mean" in out  # export says what it picked on
    assert "site 0 (32x32 map)" in out  # the block art of the best pattern, at its map size
    store, search = check_exactly_once(RunDir(run_dir))
    try:
        assert search.state == "finished"
        assert store.counts(search.id, purposes=["search"])["done"] == 8
        versions = [t.controller_version for t in store.trials(search.id, purposes=["search"])]
        assert versions.count(0) <= 4 and max(versions) >= 2, versions  # learning inside
        good = store.top_trials(search.id, 2, succeeded_only=True, purposes=["search"],
                                distinct=True)  # a refused pattern is not re-checked
        assert good and store.counts(search.id, purposes=["recheck"])["done"] == len(good)
        for res in store.results(search.id):
            if res.metrics.get("refused"):  # over the drop cap: refused, no child trained
                continue
            assert res.metrics["steps"] == 2.0 and 0.0 <= res.reward <= 1.0
            assert res.reward == res.metrics["val_acc"]  # the reward is validation accuracy
        best = load_patternset(run_dir / "best.json")
        rc = best.provenance.recheck  # picked on the mean over the pattern's two seeds
        assert rc is not None and rc["n"] == 2 and rc["selected_on"] == "recheck mean"
        means = []
        for t, _ in good:
            vals = [r.reward for _, r in store.pattern_runs(search.id, [t.pattern_hash])]
            means.append(sum(vals) / len(vals))
        assert rc["mean"] == max(means)
    finally:
        store.close()
