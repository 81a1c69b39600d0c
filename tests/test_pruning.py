"""Early stopping of clearly bad children: the threshold rule, the image task honouring it,
the store skipping truncated rewards when picking the best, option checks, and a real
CIFAR search (child subprocesses, SQLite) in which the worst children are stopped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.daemon.config import SearchConfig
from adsearch.daemon.launch import create_search
from adsearch.daemon.pruning import Pruner, quantile, threshold, value_at
from adsearch.daemon.rundir import RunDir
from adsearch.daemon.runner import run_daemon
from adsearch.errors import ConfigError
from adsearch.store import Store
from adsearch.store.records import NewTrial
from adsearch.tasks import Budget, get_task

TINY = {"depth": 10, "width": 1, "train_per_class": 20, "val_per_class": 10, "batch_size": 50, "lr": 0.1}


def _curve(*accs: float) -> list[dict[str, float]]:
    return [{"epoch": float(i + 1), "step": float(10 * (i + 1)), "val_metric": a} for i, a in enumerate(accs)]


def test_threshold_is_a_quantile_of_values_at_the_check_epoch() -> None:
    assert quantile([4.0, 1.0, 3.0, 2.0], 0.0) == 1.0 and quantile([4.0, 1.0, 3.0, 2.0], 1.0) == 4.0
    assert quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.25) == 2.0
    assert quantile([1.0, 2.0], 0.5) == pytest.approx(1.5)
    assert value_at(_curve(0.1, 0.3), 1.0) == 0.1 and value_at(_curve(0.1, 0.3), 2.0) == 0.3
    assert value_at(_curve(0.1), 2.0) is None and value_at([{"epoch": 1.0, "val_metric": float("nan")}], 1.0) is None
    curves = [_curve(a, a + 0.2) for a in (0.1, 0.2, 0.3, 0.4)] + [_curve(0.05), []]
    assert threshold(curves, 1.0, 0.5, min_trials=6) is None  # only 5 have a value at epoch 1
    assert threshold(curves, 1.0, 0.5, min_trials=5) == pytest.approx(0.2)  # truncated ones count
    assert threshold(curves, 2.0, 0.5, min_trials=4) == pytest.approx(0.45)


def test_image_child_stops_below_the_threshold_and_says_so() -> None:
    task, cfg = get_task("cifar10"), get_task("cifar10").config_from_dict({**TINY, "epochs": 3})
    cut = task.run_child(cfg, None, Budget(prune_epoch=1, prune_below=1.01), "cpu", 0)
    assert cut.metrics["truncated"] == 1.0 and cut.metrics["truncated_at_epoch"] == 1.0
    assert len(cut.curve) == 1 and cut.metrics["epochs"] == 1.0
    assert cut.reward == cut.curve[0]["val_metric"] == cut.metrics["val_acc"]
    full = task.run_child(cfg, None, Budget(prune_epoch=1, prune_below=-1.0), "cpu", 0)
    assert "truncated" not in full.metrics and len(full.curve) == 3
    assert full.curve[0]["val_metric"] == cut.curve[0]["val_metric"]  # same seed, same first epoch
    # the check point is the last epoch: nothing is left to save, the child is not truncated
    last = task.run_child(cfg, None, Budget(epochs=1, prune_epoch=1, prune_below=1.01), "cpu", 0)
    assert "truncated" not in last.metrics


def _search(tmp_path: Path, **kw: Any) -> RunDir:
    opts: dict[str, Any] = {"task": "cifar10", "controller": "random", "workers": 1,
                            "batch_size": 2, "budget_trials": 8, "task_config": {**TINY, "epochs": 2}}
    opts.update(kw)
    return create_search(SearchConfig(name="p", **opts), RunDir(tmp_path / "p"))


def test_pruner_budget_and_best_skip_truncated(tmp_path: Path) -> None:
    run = _search(tmp_path, prune_epoch=1, prune_min_trials=3, prune_quantile=0.5)
    store = Store(run.store_url())
    try:
        sid = store.get_search("p").id
        cfg = SearchConfig.from_dict(store.get_search("p").config)
        pruner = Pruner(cfg)
        recs = store.add_trials(sid, [NewTrial(pattern=[], pattern_hash=f"h{i}", tokens=[], controller_version=0, logp=0.0, seed=i) for i in range(4)])
        assert pruner.budget(store, sid) == cfg.child_budget().to_dict()  # nothing finished yet
        finished = [(0.30, _curve(0.2, 0.30), {}), (0.50, _curve(0.4, 0.50), {}),
                    (0.90, _curve(0.9), {"truncated": 1.0, "truncated_at_epoch": 1.0})]
        for rec, (reward, curve, metrics) in zip(recs[:3], finished, strict=True):
            store.update_trial(rec.id, state="running")
            store.finish_trial(rec.id, reward, {"val_acc": reward, **metrics}, curve, 1.0, state="done")
        budget = pruner.budget(store, sid)
        assert budget["prune_epoch"] == 1 and budget["prune_below"] == pytest.approx(0.4)
        assert Budget.from_dict(budget).prune_now(1.0, 0.39, last=False)
        assert not Budget.from_dict(budget).prune_now(1.0, 0.41, last=False)
        # a fourth child finishing moves the threshold (the pruner reads only what is new)
        store.update_trial(recs[3].id, state="running")
        store.finish_trial(recs[3].id, 0.2, {"val_acc": 0.2}, _curve(0.1, 0.2), 1.0, state="done")
        assert pruner.budget(store, sid)["prune_below"] == pytest.approx(0.3)
        top = store.top_trials(sid, 2, full_only=True)
        assert [r.reward for _, r in top] == [0.5, 0.3]  # the truncated 0.9 is skipped
        assert store.top_trials(sid, 1)[0][1].reward == 0.9  # unless asked for every result
    finally:
        store.close()


@pytest.mark.parametrize(("kw", "message"), [
    ({"task": "wikitext2", "task_config": {}, "prune_epoch": 1}, "does not support early stopping"),
    ({"prune_epoch": 2}, "not before the end of training (2 epochs)"),
    ({"prune_epoch": 0.5}, "whole number of epochs"),
    ({"prune_epoch": 1, "prune_quantile": 1.5}, "--prune-quantile"),
    ({"child_seed": -1}, "--child-seed"),
])
def test_bad_pruning_options_are_refused(tmp_path: Path, kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _search(tmp_path, **kw)
    assert not (tmp_path / "p").exists()  # nothing half-made


def test_search_with_pruning_stops_the_worst_children_and_exports_a_full_one(tmp_path: Path) -> None:
    """A real search: 8 CIFAR children in subprocesses, a common child seed, and a rule that
    (after 3 finished children) stops those below the median at epoch 1."""
    run = _search(tmp_path, prune_epoch=1, prune_min_trials=3, prune_quantile=0.5, child_seed=7)
    daemon = run_daemon(str(run.path))
    assert daemon.finished
    store = Store(run.store_url(), readonly=True)
    try:
        sid = store.get_search("p").id
        assert {t.seed for t in store.trials(sid)} == {7}
        results = store.results(sid)
        assert len(results) == 8
        cut = [r for r in results if r.metrics.get("truncated")]
        full = [r for r in results if not r.metrics.get("truncated")]
        assert cut and full, [r.metrics for r in results]
        for r in cut:
            assert len(r.curve) == 1 and r.reward == r.curve[0]["val_metric"] < r.metrics["prune_below"]
        assert all(len(r.curve) == 2 for r in full)
        best = store.top_trials(sid, 1, full_only=True)[0]
    finally:
        store.close()
    out = tmp_path / "best.json"
    res = CliRunner().invoke(app, ["export", "p", "--run-dir", str(run.path), "--best", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["provenance"]["trial_id"] == best[0].id


def test_best_full_trials_are_found_past_a_page_of_truncated_ones(tmp_path: Path) -> None:
    """top_trials(full_only=True) reads in pages; 40 truncated children with higher rewards
    than the 2 full ones must not hide them."""
    run = _search(tmp_path)
    store = Store(run.store_url())
    try:
        sid = store.get_search("p").id
        recs = store.add_trials(sid, [NewTrial(pattern=[], pattern_hash=f"h{i}", tokens=[], controller_version=0, logp=0.0, seed=i) for i in range(42)])
        for i, rec in enumerate(recs):
            store.update_trial(rec.id, state="running")
            full = i >= 40
            store.finish_trial(rec.id, 0.1 + 0.01 * i if full else 0.9, {} if full else {"truncated": 1.0}, [], 1.0, state="done")
        top = store.top_trials(sid, 3, full_only=True)
        assert [t.id for t, _ in top] == [recs[41].id, recs[40].id]
        assert len(store.top_trials(sid, 5)) == 5
    finally:
        store.close()
