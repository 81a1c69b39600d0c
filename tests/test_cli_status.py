"""`adsearch status` (issue 12 §5): best so far agrees with the top table, the budget says
what it counts and shows drawn and finished trials, the pace (trials/hour, ETA), what the
entropy figure means, and `--watch` ends with the search. Real stores and daemons."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_daemon_support import cli_env
from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.daemon.config import SearchConfig
from adsearch.daemon.launch import create_search
from adsearch.daemon.rundir import RunDir
from adsearch.daemon.runner import run_daemon
from adsearch.store import NewTrial, Store

runner = CliRunner()


def status(runs: Path, *args: str) -> Any:
    res = runner.invoke(app, ["status", *args], env={"ADSEARCH_RUNS": str(runs)})
    assert res.exit_code == 0, res.output
    return res


def text_of(runs: Path, name: str) -> str:
    """The rendered status with the terminal's line wrapping undone."""
    return " ".join(status(runs, name).stdout.split())


def finished_search(root: Path) -> None:
    cfg = SearchConfig(name="done", task="synthetic", controller="transformer", batch_size=2,
                       workers=1, budget_trials=4)
    run_daemon(str(create_search(cfg, RunDir(root / "done")).path))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished transformer search and one stopped after its first controller update."""
    root = tmp_path_factory.mktemp("status") / "runs"
    finished_search(root)
    cfg = SearchConfig(name="half", task="synthetic", controller="random", batch_size=2,
                       workers=1, budget_trials=20, task_config={"sleep": 0.2})

    def stop_after_first_update(d: Any) -> None:
        if d.controller.version >= 1:
            d.request_stop(reason="test")

    run_daemon(str(create_search(cfg, RunDir(root / "half")).path), on_tick=stop_after_first_update)
    return root


def test_best_so_far_includes_trials_after_the_last_update(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    finished_search(root)  # its own store: search.json names the store by absolute path
    with Store(RunDir(root / "done").store_url()) as st:
        search = st.get_search("done")
        top = st.top_trials(search.id, 1, full_only=True)[0][0]
        (t,) = st.add_trials(search.id, [NewTrial(top.pattern, top.pattern_hash + "x", top.tokens,
                                                  top.controller_version, top.logp, 99)])
        st.finish_trial(t.id, 7.5, {}, [], 1.0)  # no controller update has seen it
    snap = json.loads(status(root, "done", "--json").stdout)
    assert snap["top"][0]["reward"] == 7.5 and snap["best"] == {"trial_id": t.id, "reward": 7.5}
    assert snap["trend"]["best_so_far"][-1] == 7.5
    text = text_of(root, "done")
    assert "best so far" in text and text.split("best so far")[1].split()[1] == "7.5000"


def test_budget_counts_drawn_trials_and_shows_finished_pace_and_eta(runs: Path) -> None:
    snap = json.loads(status(runs, "half", "--json").stdout)
    b = snap["budget"]
    c = snap["counts"]
    assert b["counts"] == "drawn" and b["drawn"] == sum(c.values()) and b["budget_trials"] == 20
    assert b["finished"] == c.get("done", 0) + c.get("failed", 0) + c.get("stale", 0) >= 2
    assert b["trials_per_hour"] == pytest.approx(b["finished"] / (snap["elapsed_s"] / 3600))
    assert b["eta_s"] == pytest.approx((20 - b["finished"]) / b["trials_per_hour"] * 3600)
    text = text_of(runs, "half")
    assert f"{b['drawn']}/20 trials drawn ({b['finished']} finished)" in text
    assert "trials/hour" in text and "budget spent in about" in text
    done = json.loads(status(runs, "done", "--json").stdout)["budget"]
    assert done["eta_s"] is None and done["finished"] == done["drawn"] == 4  # ended: no ETA


def test_entropy_is_explained(runs: Path) -> None:
    snap = json.loads(status(runs, "done", "--json").stdout)
    assert 0 < snap["controller"]["entropy"] <= snap["entropy_uniform"] + 1e-6
    text = text_of(runs, "done")
    assert "nats of" in text and "uniform random policy has the maximum" in text


def test_watch_ends_when_the_search_ends(runs: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "adsearch", "status", "done", "--watch",
                           "--interval", "0.2"], env=cli_env(runs), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "search done is finished and no daemon runs it; watch ended" in proc.stdout


def test_time_past_the_budget_is_said_apart_from_it(tmp_path: Path) -> None:
    """A time budget that ran out while children were running, then a re-check: the budget
    line says the budget was spent and how long the search ran past it, not ``0.1/0.01``."""
    root = tmp_path / "runs"
    cfg = SearchConfig(name="over", task="synthetic", controller="random", batch_size=2,
                       workers=1, budget_minutes=0.01, recheck_top=1, recheck_seeds=1,
                       task_config={"sleep": 1.0})
    run_daemon(str(create_search(cfg, RunDir(root / "over")).path))
    snap = json.loads(status(root, "over", "--json").stdout)
    assert snap["elapsed_s"] > 0.6 and snap["recheck"]["enabled"]
    text = text_of(root, "over")
    past = snap["elapsed_s"] / 60 - 0.01
    assert (f"budget: 0.01/0.01 min spent, then {past:.1f} min past it (the children running "
            "at its end and the re-check; the budget stops new draws)") in text, text


def test_a_tpe_search_says_it_has_no_entropy(tmp_path: Path) -> None:
    """TPE has no policy: status says so instead of 'entropy 0.000 nats', which would read
    as a controller that has settled."""
    pytest.importorskip("optuna", reason="the TPE controller needs optuna (adsearch[tpe])")
    root = tmp_path / "runs"
    cfg = SearchConfig(name="tpe", task="synthetic", controller="tpe", batch_size=2,
                       workers=1, budget_trials=4, recheck=False)
    run_daemon(str(create_search(cfg, RunDir(root / "tpe")).path))
    text = text_of(root, "tpe")
    assert "controller tpe v" in text and "no entropy (TPE keeps density models" in text, text
    assert "nats" not in text
