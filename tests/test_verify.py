"""``adsearch verify``: the paired t-interval maths against hand-computed values, a full
verify of a synthetic search through the real CLI and real child processes (tuned baselines
picked on validation, paired seeds, JSON and PNG), resume after ``kill -9`` without running
anything twice, bad input (clean error, exit 1, nothing written), and a tiny real CIFAR run.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_daemon_support import cli_env, dump_db, run_cli, wait_for

from adsearch.daemon.config import SearchConfig
from adsearch.daemon.launch import create_search
from adsearch.daemon.rundir import DaemonLock, RunDir
from adsearch.daemon.runner import run_daemon
from adsearch.errors import AdsearchError, ConfigError
from adsearch.verify import grid, paired_diff, summarize, t_quantile
from adsearch.verify.plan import baseline_kinds, trial_key

# ---------------------------------------------------------------------------- maths


@pytest.mark.parametrize("df,expected", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622),
                                         (30, 2.0423)])
def test_t_quantile_matches_the_table(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)
    assert t_quantile(0.025, df) == pytest.approx(-expected, abs=1e-4)


def test_paired_ci_by_hand() -> None:
    # a - b per seed: 0.5, 1.0, 1.5 -> mean 1, sd 0.5, half width t(0.975, 2) * 0.5 / sqrt(3)
    a = {0: 1.0, 1: 2.0, 2: 4.0, 7: 9.0}  # seed 7 has no partner: left out
    b = {0: 0.5, 1: 1.0, 2: 2.5}
    d = paired_diff(a, b)
    half = 4.302652729749752 * 0.5 / math.sqrt(3)
    assert (d.n, d.seeds) == (3, (0, 1, 2))
    assert d.mean == pytest.approx(1.0) and d.std == pytest.approx(0.5)
    assert (d.lo, d.hi) == (pytest.approx(1.0 - half), pytest.approx(1.0 + half))
    assert not d.significant  # [-0.242, 2.242] holds 0
    # unpaired, the same numbers would be far noisier: pairing is what narrows the interval
    assert summarize(list(a.values())[:3]).std > d.std
    tight = paired_diff({0: 1.0, 1: 1.1, 2: 1.2}, {0: 0.0, 1: 0.1, 2: 0.25})
    assert tight.significant and tight.lo > 0


def test_baseline_grids_and_kinds() -> None:
    assert len(grid("dropblock")) == 12 and len(grid("dropout")) == 4
    assert {g["drop_prob"] for g in grid("variational")} == {0.05, 0.1, 0.2, 0.3}
    assert {g["block_size"] for g in grid("dropblock")} == {3, 5, 7}
    assert baseline_kinds("conv", None) == ("dropout", "spatial", "dropblock")
    assert baseline_kinds("seq", None) == ("dropout", "variational")
    with pytest.raises(ConfigError, match="dropblock does not apply to a seq space"):
        baseline_kinds("seq", ["dropout", "dropblock"])
    assert trial_key("tune", [{"kind": "none"}]) != trial_key("test", [{"kind": "none"}])


# ---------------------------------------------------------------------------- end to end


def _search(root: Path, name: str, budget: int = 8, **task: Any) -> Path:
    cfg = SearchConfig(name=name, task="synthetic", controller="random", batch_size=2,
                       workers=2, budget_trials=budget, task_config=task)
    run = create_search(cfg, RunDir(root / name))
    assert run_daemon(str(run.path)).finished
    return run.path


def _store_rows(run_dir: Path) -> tuple[list[Any], dict[int, Any]]:
    from test_daemon_support import open_store

    store, search = open_store(run_dir)
    try:
        return store.trials(search.id), {r.trial_id: r for r in store.results(search.id)}
    finally:
        store.close()


@pytest.fixture(scope="module")
def verified(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    root = tmp_path_factory.mktemp("verify") / "runs"
    _search(root, "syn")
    proc = run_cli(root, "verify", "syn", "--top-k", "2", "--seeds", "3", timeout=300)
    doc = json.loads((root / "syn-verify" / "verify.json").read_text())
    return root, doc, proc.stdout


def test_verify_end_to_end(verified: tuple[Path, dict[str, Any], str]) -> None:
    root, doc, out = verified
    labels = [r["label"] for r in doc["regularizers"]]
    # the synthetic baselines' known optimum is p=0.1 (b=5): picked on validation
    assert labels == ["none", "pattern 1", "pattern 2", "dropout p=0.1", "spatial p=0.1",
                      "dropblock p=0.1 b=5"]
    assert doc["metric"] == "test_reward" and doc["seeds"] == [0, 1, 2]
    assert len(doc["tuning"]["dropblock"]["grid"]) == 12 and len(doc["tuning"]["dropout"]["grid"]) == 4
    none = doc["regularizers"][0]
    trials, results = _store_rows(root / "syn-verify")
    by_id = {t.id: t for t in trials}
    for row in doc["regularizers"]:
        assert [r["seed"] for r in row["runs"]] == [0, 1, 2]
        assert row["test"]["n"] == 3
        for r in row["runs"]:  # each number comes from the store's result of its trial
            assert by_id[r["trial_id"]].seed == r["seed"]
            assert results[r["trial_id"]].metrics["test_reward"] == r["metrics"]["test_reward"]
        if row is none:
            continue
        diffs = [row["test_by_seed"][s] - none["test_by_seed"][s] for s in ("0", "1", "2")]
        mean = sum(diffs) / 3
        sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 2)
        assert row["vs_none"]["mean"] == pytest.approx(mean)
        assert row["vs_none"]["hi"] - mean == pytest.approx(t_quantile(0.975, 2) * sd / math.sqrt(3))
    # the best baseline is chosen on validation reward, and compared against the others
    best = max((r for r in doc["regularizers"] if r["role"] == "baseline"),
               key=lambda r: r["val"]["mean"])
    assert doc["best_baseline"] == best["label"] and best["vs_best_baseline"] is None
    assert doc["regularizers"][1]["vs_best_baseline"]["n"] == 3
    # exactly the planned trials (grids 4 + 4 + 12, then 6 regularizers x 3 seeds), each once
    assert len(trials) == 4 + 4 + 12 + 6 * 3 and all(t.state == "done" for t in trials)
    assert all(t.attempts == 1 for t in trials) and len(results) == len(trials)
    assert (root / "syn-verify" / "verify.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Δ vs none" in out and "pattern 1" in out
    status = run_cli(root, "status", "syn-verify", "--json")  # a verify search is a search
    assert json.loads(status.stdout)["counts"]["done"] == len(trials)


def test_verify_again_runs_nothing(verified: tuple[Path, dict[str, Any], str]) -> None:
    root, doc, _ = verified
    before = _store_rows(root / "syn-verify")
    proc = run_cli(root, "verify", "syn", "--top-k", "2", "--seeds", "3",
                   "-o", str(root / "again.json"))
    after = _store_rows(root / "syn-verify")
    assert [t.to_dict() for t in after[0]] == [t.to_dict() for t in before[0]]
    assert after[1].keys() == before[1].keys()
    assert "0 run(s) added" in proc.stdout
    assert json.loads((root / "again.json").read_text())["regularizers"] == doc["regularizers"]
    # one verify at a time: a live daemon of NAME-verify (here: this process holds its lock)
    lock = DaemonLock(RunDir(root / "syn-verify"), "syn-verify")
    lock.acquire()
    try:
        res = run_cli(root, "verify", "syn", "--top-k", "2", "--seeds", "3", check=False)
    finally:
        lock.release()
    assert res.returncode == 1 and "'syn-verify' is already running" in res.stderr, res.stderr
    # other settings are refused rather than mixed into the same verify run
    res = run_cli(root, "verify", "syn", "--top-k", "1", "--seeds", "3", check=False)
    assert res.returncode == 1 and "exists with other settings (top_k=2)" in res.stderr


def test_tune_only_records_the_best_settings(verified: tuple[Path, dict[str, Any], str]) -> None:
    root = verified[0]
    proc = run_cli(root, "verify", "syn", "--tune-only", "--baselines", "dropblock,dropout",
                   "--verify-name", "syn-tune")
    doc = json.loads((root / "syn-tune" / "baselines.json").read_text())
    assert {k: v["label"] for k, v in doc["tuning"].items()} == {
        "dropblock": "dropblock p=0.1 b=5", "dropout": "dropout p=0.1"}
    assert "tuned baselines (selected on validation reward)" in proc.stdout
    from test_daemon_support import open_store

    store, search = open_store(root / "syn-tune")
    try:  # only the 12 + 4 tuning runs: no retraining, and the choice is in the store
        assert sum(store.counts(search.id).values()) == 16
        assert set(search.config["verify"]["tuned"]) == {"dropblock", "dropout"}
        assert store.url.endswith(str(root / "syn" / "adsearch.db"))
    finally:
        store.close()


def test_verify_resumes_after_kill(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    cfg = SearchConfig(name="slow", task="synthetic", controller="random", batch_size=2,
                       workers=1, budget_trials=4, task_config={"sleep": 0.4})
    assert run_daemon(str(create_search(cfg, RunDir(root / "slow")).path)).finished
    args = ["verify", "slow", "--top-k", "1", "--seeds", "2", "--baselines", "dropout"]
    proc = subprocess.Popen([sys.executable, "-m", "adsearch", *args], cwd=root.parent,
                            env=cli_env(root), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    vdir = root / "slow-verify"

    def done(n: int) -> bool:
        try:  # search.json is written just before the store row: not found yet is fine
            return len(_store_rows(vdir)[1]) >= n
        except AdsearchError:
            return False

    try:
        wait_for(lambda: done(5), 120, "the 4 tuning runs and one retraining run")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its in-process daemon and its child
        proc.wait(timeout=30)
    trials, results = _store_rows(vdir)
    done_before = dict(results)
    assert len(done_before) < 4 + 3 * 2  # killed mid-way
    run_cli(root, *args, timeout=300)
    trials, results = _store_rows(vdir)
    assert len(trials) == 4 + 3 * 2 and all(t.state == "done" for t in trials)
    keys = [(t.pattern_hash, t.seed) for t in trials]
    assert len(set(keys)) == len(keys)  # no planned run was added twice
    for tid, r in done_before.items():  # finished before the kill: kept, not run again
        assert results[tid] == r  # the same row: same reward, metrics and finish time
        assert next(t for t in trials if t.id == tid).attempts == 1
    starts = sum(len(list((vdir / "trials" / str(t.id)).glob("attempt-*.log"))) for t in trials)
    assert starts <= len(trials) + 1  # at most the one run the kill interrupted ran again


# ---------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def bad_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad") / "runs"
    _search(root, "conv")
    cfg = SearchConfig(name="seq", task="synthetic", controller="random", batch_size=2,
                       workers=1, budget_trials=2, task_config={"space": "seq-2"}, space="seq-2")
    assert run_daemon(str(create_search(cfg, RunDir(root / "seq")).path)).finished
    create_search(SearchConfig(name="empty", task="synthetic", budget_trials=2),
                  RunDir(root / "empty"))  # created, never run: no finished trial
    return root


@pytest.mark.parametrize("args,needle", [
    (["empty"], "search 'empty' has no finished trial"),
    (["seq", "--baselines", "dropblock"], "dropblock does not apply to a seq space"),
    (["conv", "--baselines", "variational"], "variational does not apply to a conv space"),
    (["conv", "--baselines", "gaussian"], "unknown baseline 'gaussian'"),
    (["nope"], "no search 'nope'"),
    (["conv", "--top-k", "0"], "--top-k: invalid value 0"),
    (["conv", "--seeds", "1"], "needs at least 2 seeds"),
    (["conv", "--tune-seeds", "0"], "--tune-seeds: invalid value 0"),
    (["conv", "--compare", "seq"], "search 'seq' differs from 'conv' in space"),
    (["conv", "--compare", "empty"], "search 'empty' has no finished full-length trial"),
    (["conv", "--compare", "conv"], "that is the search being verified"),
    (["conv", "--compare", "nope"], "no search 'nope'"),
])
def test_bad_input_writes_nothing(bad_root: Path, args: list[str], needle: str) -> None:
    def files() -> list[Path]:  # SQLite's -wal/-shm files come and go with any reader
        return sorted(p.relative_to(bad_root) for p in bad_root.rglob("*")
                      if not p.name.endswith(("-wal", "-shm")))

    before = files()
    dbs = {p: dump_db(p) for p in bad_root.glob("*/adsearch.db")}
    res = run_cli(bad_root, "verify", *args, check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.startswith("error:") and needle in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert files() == before
    assert {p: dump_db(p) for p in dbs} == dbs


def test_verify_compares_another_searchs_best(tmp_path: Path) -> None:
    """--compare: the best pattern of a second search (say, random search at the same
    budget) is retrained on the same paired seeds and reported next to the learned ones."""
    root = tmp_path / "runs"
    _search(root, "ctl", budget=4)
    _search(root, "rnd", budget=4)
    run_cli(root, "verify", "ctl", "--top-k", "1", "--seeds", "2", "--baselines", "dropout",
            "--compare", "rnd", timeout=300)
    doc = json.loads((root / "ctl-verify" / "verify.json").read_text())
    rows = {r["label"]: r for r in doc["regularizers"]}
    assert list(rows) == ["none", "pattern 1", "rnd best", "dropout p=0.1"]
    trials, results = _store_rows(root / "rnd")
    # the best of rnd is what its export picks: the best mean of its re-check (issue 19 §5)
    win = json.loads(run_cli(root, "status", "rnd", "--json").stdout)["recheck"]["winner"]
    best = next(t for t in trials if t.id == win["trial_id"])
    got = rows["rnd best"]
    assert got["role"] == "compared" and got["source_trial"] == best.id
    assert got["stored"] == best.pattern
    assert [r["seed"] for r in got["runs"]] == [0, 1] and got["vs_none"]["n"] == 2
    assert got["vs_best_baseline"]["n"] == 2


def test_start_refuses_the_fixed_controller() -> None:
    with pytest.raises(ConfigError, match="only `adsearch verify` creates fixed searches"):
        SearchConfig(name="x", task="synthetic", controller="fixed").validate()


# ---------------------------------------------------------------------------- real CIFAR


@pytest.mark.slow
def test_verify_tiny_cifar(tmp_path: Path, data_slices: Path) -> None:
    """A real CIFAR-10 verify at a tiny budget: WRN on the embedded sample, 2 steps per run,
    test on the real test images shipped in tests/fixtures."""
    root = tmp_path / "runs"
    # max_drop 1: the one pattern drawn drops 51% of site 0, over the default drop cap, and
    # this search needs it trained (only a pattern that wipes a whole map is refused then)
    cfg = SearchConfig(name="c", task="cifar10", controller="random", batch_size=1, workers=2,
                       budget_trials=1, child_steps=2, max_drop=1.0,
                       task_config={"train_per_class": 8, "val_per_class": 4,
                                    "batch_size": 16})
    assert run_daemon(str(create_search(cfg, RunDir(root / "c")).path)).finished
    res = run_cli(root, "verify", "c", "--top-k", "1", "--seeds", "2", check=False)
    assert res.returncode == 1 and "--test-data" in res.stderr  # the sample has no test split
    assert not (root / "c-verify").exists()
    run_cli(root, "verify", "c", "--top-k", "1", "--seeds", "2", "--baselines", "dropout",
            "--test-data", str(data_slices / "cifar10-jpg" / "test"), timeout=600)
    doc = json.loads((root / "c-verify" / "verify.json").read_text())
    assert doc["metric"] == "test_acc"
    assert [r["label"] for r in doc["regularizers"]][:2] == ["none", "pattern 1"]
    for row in doc["regularizers"]:
        assert row["test"]["n"] == 2 and 0.0 <= row["test"]["mean"] <= 1.0
        assert row["vs_none"] is None or row["vs_none"]["n"] == 2


@pytest.mark.slow
def test_verify_compares_a_search_of_the_other_family(tmp_path: Path,
                                                      data_slices: Path) -> None:
    """--compare of the paper's v1 space (conv-3) next to a v2 search (conv2-3) on the same
    CIFAR sites: the v1 best keeps its own space, trains at the same paired seeds and is
    reported like any compared search (issue 21: the four searches in one table)."""
    root = tmp_path / "runs"
    tc = {"train_per_class": 8, "val_per_class": 4, "batch_size": 16}
    for name, space in (("v2", "conv2-3"), ("v1", "conv-3")):
        cfg = SearchConfig(name=name, task="cifar10", controller="random", batch_size=1,
                           workers=2, budget_trials=1, child_steps=2, max_drop=1.0,
                           space=space, task_config=tc)
        assert run_daemon(str(create_search(cfg, RunDir(root / name)).path)).finished
    run_cli(root, "verify", "v2", "--top-k", "1", "--seeds", "2", "--baselines", "dropout",
            "--tuned", "dropout:0.1", "--compare", "v1",
            "--test-data", str(data_slices / "cifar10-jpg" / "test"), timeout=600)
    doc = json.loads((root / "v2-verify" / "verify.json").read_text())
    rows = {r["label"]: r for r in doc["regularizers"]}
    assert list(rows) == ["none", "pattern 1", "v1 best", "dropout p=0.1"]
    trials, _ = _store_rows(root / "v1")
    got = rows["v1 best"]
    assert got["stored"] == [{"kind": "patterns", "space": "conv-3",
                              "patterns": trials[0].pattern}]
    assert [r["seed"] for r in got["runs"]] == [0, 1] and got["test"]["n"] == 2
    assert got["vs_none"]["n"] == 2
    assert rows["pattern 1"]["stored"] == _store_rows(root / "v2")[0][0].pattern


def test_compare_of_the_other_family_refused_where_a_child_reads_one_space(
        tmp_path: Path) -> None:
    """The synthetic reward is defined on one space's tokens: conv-3 next to conv2-3 is
    refused there with the reason, and nothing is written."""
    root = tmp_path / "runs"
    _search(root, "a", budget=2)
    cfg = SearchConfig(name="b", task="synthetic", controller="random", batch_size=2,
                       workers=1, budget_trials=2, task_config={"space": "conv2-3"},
                       space="conv2-3")
    assert run_daemon(str(create_search(cfg, RunDir(root / "b")).path)).finished
    res = run_cli(root, "verify", "a", "--compare", "b", check=False)
    assert res.returncode == 1 and "a synthetic child reads one space" in res.stderr, res.stderr
    assert not (root / "a-verify").exists()


# ---------------------------------------------------------------------------- script mode


def test_verify_a_script_search(tmp_path: Path) -> None:
    """A script search (the user's own command) is verified too: the baseline runs hand the
    script a baseline spec as ``trial.patterns``, and its ``test_score`` is compared."""
    import shlex

    script = Path(__file__).parent / "fixtures" / "verify_script.py"
    root = tmp_path / "runs"
    cfg = SearchConfig(name="s", task="script", controller="random", batch_size=2, workers=2,
                       budget_trials=3, task_config={
                           "command": shlex.join([sys.executable, str(script)]),
                           "workdir": str(tmp_path), "space": "conv-2"})
    assert run_daemon(str(create_search(cfg, RunDir(root / "s")).path)).finished
    proc = run_cli(root, "verify", "s", "--top-k", "1", "--seeds", "2", "--baselines", "dropout",
                   timeout=300)
    doc = json.loads((root / "s-verify" / "verify.json").read_text())
    assert doc["metric"] == "test_score"
    # the crashing p=0.3 run is shown as an error, never scored
    assert "1 tuning run(s) gave no result" in proc.stderr and "drop_prob 0.3" in proc.stderr
    grid = {g["label"]: g for g in doc["tuning"]["dropout"]["grid"]}
    assert grid["dropout p=0.3"]["val"] == [] and grid["dropout p=0.3"]["val_mean"] is None
    assert len(grid["dropout p=0.05"]["val"]) == 1
    rows = {r["label"]: r for r in doc["regularizers"]}
    assert list(rows) == ["none", "pattern 1", "dropout p=0.1"]  # 0.1 is the script's optimum
    assert rows["none"]["test"]["mean"] == pytest.approx(0.8 + sum(
        __import__("random").Random(f"t{s}").gauss(0.0, 0.02) for s in (0, 1)) / 2)
    assert rows["dropout p=0.1"]["vs_none"]["mean"] == pytest.approx(0.1)  # paired: noise cancels
    assert rows["dropout p=0.1"]["vs_none"]["std"] == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------------- plug-in task


def test_verify_a_plugin_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plug-in task (``module:Class``) is verified through get_task like a built-in; its
    lower-is-better ``test_err`` is compared, and its tuned baseline is its own optimum."""
    fixtures = Path(__file__).parent / "fixtures"
    monkeypatch.syspath_prepend(str(fixtures))
    path = os.pathsep.join([str(Path(__file__).parents[1]), str(fixtures)])
    monkeypatch.setenv("PYTHONPATH", path)  # the children of this process's daemon import it
    root = tmp_path / "runs"
    cfg = SearchConfig(name="p", task="verify_plugin:TinyTask", controller="random",
                       batch_size=2, workers=2, budget_trials=3)
    assert run_daemon(str(create_search(cfg, RunDir(root / "p")).path)).finished
    env = cli_env(root, PYTHONPATH=path)
    proc = subprocess.run([sys.executable, "-m", "adsearch", "verify", "p", "--top-k", "1",
                           "--seeds", "2", "--baselines", "spatial", "--tune-seeds", "2"],
                          cwd=root.parent, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((root / "p-verify" / "verify.json").read_text())
    assert doc["metric"] == "test_err" and doc["lower_is_better"] is True
    rows = {r["label"]: r for r in doc["regularizers"]}
    assert list(rows) == ["none", "pattern 1", "spatial p=0.2"]
    assert rows["spatial p=0.2"]["vs_none"]["mean"] == pytest.approx(-0.1)  # 0.2 vs 0.3 error
    assert "lower is better" in proc.stdout
    assert doc["tune_seeds"] == [10000, 10001]
    assert all(len(g["val"]) == 2 for g in doc["tuning"]["spatial"]["grid"])


def test_verify_of_an_asha_search_retrains_at_the_top_rung(tmp_path: Path) -> None:
    """An ASHA search's children stop at rungs; verify retrains every run at its full budget
    (the top rung) with no early stopping."""
    root = tmp_path / "runs"
    cfg = SearchConfig(name="a", task="synthetic", controller="random", batch_size=2, workers=2,
                       budget_trials=4, scheduler="asha", min_epochs=1, max_epochs=3)
    assert run_daemon(str(create_search(cfg, RunDir(root / "a")).path)).finished
    run_cli(root, "verify", "a", "--top-k", "1", "--seeds", "2", "--baselines", "dropout")
    doc = json.loads((root / "a-verify" / "verify.json").read_text())
    assert doc["budget"]["epochs"] == 3
    from test_daemon_support import open_store

    store, search = open_store(root / "a-verify")
    try:
        vcfg = SearchConfig.from_dict(search.config)
        assert vcfg.scheduler is None and vcfg.prune_epoch is None and vcfg.child_epochs == 3
    finally:
        store.close()
