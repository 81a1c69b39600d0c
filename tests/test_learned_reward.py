"""The learned reward end to end (issue 19 §1, §2): a real daemon with ASHA on the synthetic
task stores, per consumed trial, the reward its controller update learned from; the update
events carry the batch's rewards aligned with its trial ids; ``status --json`` lists them per
update and ``show --json`` has ``learned_reward``; best so far counts full-budget results
only (a stopped child's rung value is not one), in status and in ``plot``'s trend."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.daemon.config import SearchConfig
from adsearch.daemon.launch import create_search
from adsearch.daemon.rundir import RunDir
from adsearch.daemon.runner import run_daemon
from adsearch.store import Store
from adsearch.views.status import trend, updates_text

runner = CliRunner()


def _cli(runs: Path, *args: str) -> Any:
    res = runner.invoke(app, list(args), env={"ADSEARCH_RUNS": str(runs)})
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("learned") / "runs"
    cfg = SearchConfig(name="lr", task="synthetic", controller="transformer", batch_size=4,
                       workers=1, budget_trials=16, scheduler="asha", min_epochs=1,
                       max_epochs=9, eta=3, recheck=False, task_config={"epochs": 9})
    run_daemon(str(create_search(cfg, RunDir(root / "lr")).path))
    return root


def _stored(runs: Path) -> tuple[list[Any], list[Any], list[Any]]:
    with Store(RunDir(runs / "lr").store_url(), readonly=True) as st:
        sid = st.get_search("lr").id
        return (st.results(sid), st.events(sid, limit=1000, kinds=["controller.update"]),
                st.rung_rows(sid))


def test_every_consumed_trial_stores_the_reward_its_update_used(runs: Path) -> None:
    results, updates, rows = _stored(runs)
    assert len(results) == 16 and len(updates) == 4
    by_id = {r.trial_id: r for r in results}
    stopped = [r for r in results if r.metrics.get("truncated")]
    assert stopped and len(stopped) < 16  # ASHA stopped some, and some went the distance
    for ev in updates:
        ids, rewards = ev.data["trial_ids"], ev.data["rewards"]
        assert len(ids) == len(rewards) == 4
        assert [by_id[t].learned_reward for t in ids] == rewards
        assert ev.data["mean_reward"] == pytest.approx(sum(rewards) / 4, rel=1e-6)
        assert abs(ev.data["adv_max"]) <= 5.0 and ev.data["adv_scale"] > 0
    for r in results:
        assert r.learned_reward is not None and math.isfinite(r.learned_reward)
        if not r.metrics.get("truncated"):
            assert r.learned_reward == r.reward  # a full-budget child: its own reward
    # stopped children keep their order at a rung (the offset is one number per rung and
    # update, so within an update the order of values is the order of rewards)
    for ev in updates:
        cut = [(by_id[t].reward, by_id[t].learned_reward, by_id[t].metrics["truncated_at_rung"])
               for t in ev.data["trial_ids"] if by_id[t].metrics.get("truncated")]
        for a in cut:
            for b in cut:
                if a[2] == b[2] and a[0] < b[0]:
                    assert a[1] < b[1]
    assert {r.rung for r in rows} == {1.0, 3.0, 9.0}


def test_status_lists_each_updates_rewards_and_best_is_full_budget(runs: Path) -> None:
    results, updates, _ = _stored(runs)
    snap = json.loads(_cli(runs, "status", "lr", "--json").stdout)
    got = snap["updates"]
    assert [u["version"] for u in got] == [1, 2, 3, 4]
    for u, ev in zip(got, updates, strict=True):
        assert u["trial_ids"] == ev.data["trial_ids"] and u["rewards"] == ev.data["rewards"]
        assert u["mean"] == ev.data["mean_reward"] and u["baseline"] == ev.data["baseline"]
        assert u["entropy"] == ev.data["entropy"]
    full = [r.reward for r in results if not r.metrics.get("truncated")]
    assert snap["trend"]["best_so_far"][-1] == max(full) == snap["best"]["reward"]
    for ev in updates:  # each update logged the best full-budget result of its moment
        assert ev.data["best_so_far"] is None or ev.data["best_so_far"] in full
    assert "rewards" not in snap["controller"]
    text = " ".join(_cli(runs, "status", "lr").stdout.split())
    assert "learned rewards of the last batch (v4)" in text and "batches with no spread: " in text
    assert "(full-budget results only)" in text


def test_show_has_the_learned_reward_and_marks_a_rung_value(runs: Path) -> None:
    results, _, _ = _stored(runs)
    cut = next(r for r in results if r.metrics.get("truncated"))
    doc = json.loads(_cli(runs, "show", "lr", str(cut.trial_id), "--json").stdout)
    assert doc["learned_reward"] == cut.learned_reward == doc["result"]["learned_reward"]
    assert doc["result"]["cache_of"] is None
    text = " ".join(_cli(runs, "show", "lr", str(cut.trial_id)).stdout.split())
    assert "(truncated: stopped at epoch" in text and "a rung value, not a full-budget result" in text
    assert f"learned reward {cut.learned_reward:.4f}" in text


def test_plot_trend_counts_full_budget_results_only() -> None:
    tr = trend([0.2, 0.9, 0.5, 0.4], 2, [True, False, True, True])
    assert tr["batch_mean"] == [pytest.approx(0.55), pytest.approx(0.45)]
    assert tr["best_so_far"] == [0.2, 0.5]  # the stopped child's 0.9 is no best
    none_yet = trend([0.9], 1, [False])["best_so_far"]
    assert math.isnan(none_yet[0])
    assert trend([0.2, 0.9], 2)["best_so_far"] == [0.9]  # no flags: every reward counts


def test_updates_text_counts_batches_without_spread() -> None:
    ups = [{"version": 1, "rewards": [0.5, 0.5]}, {"version": 2, "rewards": [0.5, 0.25]}]
    assert updates_text(ups) == ("learned rewards of the last batch (v2): 0.5000 0.2500  "
                                 "(spread 0.2500); batches with no spread: 1 of 2")
    assert "not recorded" in updates_text([{"version": 1, "rewards": None}])
