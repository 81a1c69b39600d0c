"""Rungs checked against the full budget during a search (issue 19 §3): the agreement
maths over rung rows, the store's ``rungs_off`` (one transaction with its event, and every
later child promoted there), ``start --rungs auto --calibration FILE`` (rungs, no early
stopping, refused mismatches), and real daemons on the synthetic task whose early rungs rank
backwards (turned off, said in status and the event log) or agree (left on)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest
from store_backends import *  # noqa: F403  (fixtures: store_url, store)
from test_cli_search import assert_clean_error
from test_daemon_support import cli_env, daemon_pid, open_store, run_cli, wait_for
from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.daemon.agreement import agreement, due_off
from adsearch.daemon.config import SearchConfig
from adsearch.rungs import decide
from adsearch.store import Store
from adsearch.store.records import NewTrial
from adsearch.store.rungs import RungRow

runner = CliRunner()


def _rows(values: dict[int, dict[float, float]]) -> list[RungRow]:
    return [RungRow(tid, rung, rung, v, None, None) for tid, by in values.items()
            for rung, v in by.items()]


def test_agreement_pairs_only_trials_that_reached_both() -> None:
    rows = _rows({1: {1.0: 0.1, 4.0: 0.9}, 2: {1.0: 0.2, 4.0: 0.8}, 3: {1.0: 0.3, 4.0: 0.7},
                  4: {1.0: 0.4}, 5: {1.0: 0.5, 2.0: 0.5, 4.0: 0.6}})
    got = {a.rung: a for a in agreement(rows, (1.0, 2.0), 4.0, off=[2.0])}
    assert got[1.0].n == 4 and got[1.0].spearman == pytest.approx(-1.0)  # trial 4 has no top
    assert got[1.0].kendall == pytest.approx(-1.0) and not got[1.0].off
    assert got[2.0].n == 1 and got[2.0].spearman is None and got[2.0].off
    cfg = SearchConfig(name="a", task="synthetic", scheduler="asha", min_epochs=1, max_epochs=4,
                       eta=2, rung_check_min=0.3, rung_check_pairs=4).validate()
    assert [a.rung for a in due_off(list(got.values()), cfg)] == [1.0]
    strict = SearchConfig(**{**cfg.to_dict(), "rung_check_pairs": 5}).validate()
    assert due_off(list(got.values()), strict) == []  # 4 pairs are not enough yet
    never = SearchConfig(**{**cfg.to_dict(), "rung_check_min": None}).validate()
    assert due_off(list(got.values()), never) == []


def test_turned_off_rung_promotes_everyone_and_logs_once(store: Store) -> None:
    sid = store.create_search("s", {"name": "s", "rungs_off": []}).id
    t = store.add_trials(sid, [NewTrial(pattern=[], pattern_hash=f"h{i}", tokens=[],
                                        controller_version=0, logp=0.0, seed=i)
                               for i in range(6)])
    rule = lambda vs, own: decide(vs, own, keep=1 / 3, min_trials=3)  # noqa: E731
    for i, v in enumerate((0.9, 0.8, 0.7)):
        store.record_rung(t[i].id, 1.0, 1.0, v, rule)
    assert store.record_rung(t[3].id, 1.0, 1.0, 0.1, rule).promoted is False  # pruned while on
    assert store.turn_rung_off(sid, 1.0, "rung 1 off", {"spearman": -0.5, "n": 9})
    assert not store.turn_rung_off(sid, 1.0, "again", {})  # once only
    cfg = store.get_search("s").config
    assert cfg["rungs_off"] == [1.0] and cfg["name"] == "s"  # the rest of the config kept
    d = store.record_rung(t[4].id, 1.0, 1.0, 0.0, rule)  # the worst value: promoted now
    assert d.promoted is True and d.threshold is None
    assert store.record_rung(t[5].id, 3.0, 3.0, 0.0, rule).promoted is True  # 1 value at 3
    events = [e for e in store.events(sid) if e.kind == "rung.off"]
    assert len(events) == 1 and events[0].message == "rung 1 off" and events[0].data["n"] == 9


# ------------------------------------------------------------------ --rungs auto
def _calibration(tmp_path: Path, first: float | None, **over: Any) -> Path:
    epochs = [{"epoch": float(e), "n": 5, "spearman": 0.9 if first and e >= first else -0.5,
               "kendall": None, "qualifies": bool(first and e >= first)} for e in range(1, 8)]
    doc = {"kind": "adsearch-calibration", "version": 1, "task": "synthetic",
           "task_config": {"epochs": 8.0}, "full_epochs": 8.0, "metric": "val_metric",
           "threshold": 0.7, "epochs": epochs, "n_final": 5,
           "recommended_rungs": [e["epoch"] for e in epochs if e["qualifies"]],
           "first_rung": first, "recommendation": "r", **over}
    path = tmp_path / f"cal-{first}.json"
    path.write_text(json.dumps(doc))
    return path


def _resolved_synthetic(tmp_path: Path, cal: Path) -> Path:
    """A calibration whose task config is the synthetic task's resolved one (epochs 8)."""
    from adsearch.tasks import get_task

    doc = json.loads(cal.read_text())
    doc["task_config"] = get_task("synthetic").config_from_dict({"epochs": 8}).to_dict()
    cal.write_text(json.dumps(doc))
    return cal


def _start(runs: Path, *args: str) -> Any:
    return runner.invoke(app, ["start", "--task", "synthetic", "--task-config", '{"epochs": 8}',
                               "--workers", "1", "--budget-trials", "1", *args],
                         env={"ADSEARCH_RUNS": str(runs)})


def test_rungs_auto_takes_the_first_rung_and_full_budget(tmp_path: Path) -> None:
    cal = _resolved_synthetic(tmp_path, _calibration(tmp_path, 5.0))
    runs = tmp_path / "runs"
    res = _start(runs, "--scheduler", "asha", "--rungs", "auto", "--calibration", str(cal),
                 "--eta", "1.5", "--name", "auto", "--foreground")
    assert res.exit_code == 0, res.output
    assert "rungs from calibration" in res.stdout and "epoch 5 (Spearman +0.90 over 5" in res.stdout
    store, search = open_store(runs / "auto")
    try:
        cfg = SearchConfig.from_dict(search.config)
    finally:
        store.close()
    assert cfg.min_epochs == 5.0 and cfg.max_epochs == 8.0 and cfg.calibration is not None
    assert cfg.schedule().rungs == (5.0, 7.5)  # type: ignore[union-attr]  # 5, 5*1.5 < 8
    assert cfg.calibration["file"] == str(cal.absolute())
    snap = json.loads(run_cli(runs, "status", "auto", "--json").stdout)
    assert snap["rungs"]["calibration"]["first_rung"] == 5.0
    assert "rungs from calibration" in run_cli(runs, "status", "auto").stdout


def test_rungs_auto_with_no_rung_recommended_turns_early_stopping_off(tmp_path: Path) -> None:
    cal = _resolved_synthetic(tmp_path, _calibration(tmp_path, None))
    runs = tmp_path / "runs"
    res = _start(runs, "--scheduler", "asha", "--rungs", "auto", "--calibration", str(cal),
                 "--name", "off", "--foreground")
    assert res.exit_code == 0, res.output
    assert "no early stopping: calibration" in res.stdout
    assert "every child trains the full budget of 8 epochs" in res.stdout
    store, search = open_store(runs / "off")
    try:
        cfg = SearchConfig.from_dict(search.config)
        rows = store.rung_rows(search.id)
    finally:
        store.close()
    assert cfg.scheduler is None and cfg.schedule() is None and cfg.child_epochs == 8.0
    assert rows == []  # nothing recorded, nothing pruned
    snap = json.loads(run_cli(runs, "status", "off", "--json").stdout)
    assert snap["rungs"]["scheduler"] is None and "no early stopping" in snap["rungs"]["note"]
    assert "no early stopping: calibration" in run_cli(runs, "status", "off").stdout


@pytest.mark.parametrize(("over", "args", "needles"), [
    ({}, ("--rungs", "auto"), ("--rungs auto needs --calibration FILE",)),
    ({}, ("--scheduler", "asha", "--rungs", "3"), ("--rungs '3'", "the one value is auto")),
    ({}, ("--rungs", "auto", "--calibration", "CAL"), ("add --scheduler asha",)),
    ({}, ("--calibration", "CAL"), ("--calibration FILE is read by --rungs auto",)),
    ({}, ("--scheduler", "asha", "--rungs", "auto", "--calibration", "CAL", "--min-epochs", "2"),
     ("--rungs auto and --min-epochs exclude each other",)),
    ({}, ("--scheduler", "asha", "--rungs", "auto", "--calibration", "CAL", "--max-epochs", "4"),
     ("--max-epochs 4 differs from the full budget (8 epochs)",)),
    ({"task": "wikitext2"}, ("--scheduler", "asha", "--rungs", "auto", "--calibration", "CAL"),
     ("was measured on task 'wikitext2', not 'synthetic'",)),
    ({"task_config": {"epochs": 8.0, "noise_sd": 0.5}},
     ("--scheduler", "asha", "--rungs", "auto", "--calibration", "CAL"),
     ("another task config", "noise_sd: 0.5 vs 0.05")),
    ({"metric": "val_loss"}, ("--scheduler", "asha", "--rungs", "auto", "--calibration", "CAL"),
     ("ranks by val_loss",)),
    ({"kind": "other"}, ("--scheduler", "asha", "--rungs", "auto", "--calibration", "CAL"),
     ("is not a calibration",)),
])
def test_rungs_auto_refuses_mismatches_and_writes_nothing(
        tmp_path: Path, over: dict[str, Any], args: tuple[str, ...],
        needles: tuple[str, ...]) -> None:
    cal = _calibration(tmp_path, 5.0)
    if "task_config" not in over:
        cal = _resolved_synthetic(tmp_path, cal)
    doc = {**json.loads(cal.read_text()), **over}
    cal.write_text(json.dumps(doc))
    runs = tmp_path / "runs"
    res = _start(runs, *[str(cal) if a == "CAL" else a for a in args], "--name", "bad")
    assert_clean_error(res, *needles)
    assert not (runs / "bad").exists()


def test_missing_calibration_file_is_a_clean_error(tmp_path: Path) -> None:
    res = _start(tmp_path / "runs", "--scheduler", "asha", "--rungs", "auto", "--calibration",
                 str(tmp_path / "nope.json"))
    assert_clean_error(res, "nope.json does not exist", "adsearch calibrate")


def test_bad_rung_check_options_are_refused(tmp_path: Path) -> None:
    res = _start(tmp_path / "runs", "--scheduler", "asha", "--min-epochs", "1", "--max-epochs",
                 "8", "--rung-check-pairs", "2")
    assert_clean_error(res, "--rung-check-pairs", ">= 3")
    res = _start(tmp_path / "runs", "--scheduler", "asha", "--min-epochs", "1", "--max-epochs",
                 "8", "--rung-check-min", "1.5")
    assert_clean_error(res, "--rung-check-min")


# ------------------------------------------------------------------ real daemons
def _search(tmp_path: Path, curve: str, name: str, *extra: str) -> tuple[Path, dict[str, Any]]:
    runs = tmp_path / "runs"
    cfg = json.dumps({"epochs": 8, "curve": curve, "noise_sd": 0.0})
    run_cli(runs, "start", "--task", "synthetic", "--task-config", cfg, "--scheduler", "asha",
            "--min-epochs", "1", "--max-epochs", "8", "--eta", "3", "--workers", "2",
            "--budget-trials", "40", "--batch-size", "4", "--controller", "random",
            "--no-recheck", "--name", name, *extra)
    wait_for(lambda: daemon_pid(runs / name) is None, 180, "the daemon to finish", 0.5)
    snap = json.loads(run_cli(runs, "status", name, "--json").stdout)
    assert snap["state"] == "finished", snap
    return runs, snap


def test_daemon_stops_pruning_at_rungs_that_rank_backwards(tmp_path: Path) -> None:
    """Synthetic curves that rank backwards before half the budget: rungs 1 and 3 of 8
    disagree with the full budget, so once 8 trials reached both, the daemon stops pruning
    there (config, event log, status), later children there are all promoted, and the search
    runs to its end."""
    runs, snap = _search(tmp_path, "reverse", "rev")
    rungs = {r["rung"]: r for r in snap["rungs"]["rungs"]}
    assert snap["rungs"]["rungs_off"] == [1.0, 3.0]
    for rung in (1.0, 3.0):
        a = rungs[rung]["agreement"]
        assert rungs[rung]["off"] and a["n"] >= 8 and a["spearman"] < 0.3
    store, search = open_store(runs / "rev")
    try:
        events = [e for e in store.events(search.id, limit=500) if e.kind == "rung.off"]
        rows = store.rung_rows(search.id)
        assert store.counts(search.id).get("done") == 40  # --no-recheck: the budget only
    finally:
        store.close()
    assert sorted(e.data["rung"] for e in events) == [1.0, 3.0]
    for e in events:
        assert e.data["n"] >= 8 and e.data["spearman"] < 0.3 and "pruning stopped" in e.message
    assert any(r.promoted is False for r in rows if r.rung == 1.0)  # it pruned while on
    # after the event, nobody is stopped at that rung: rows recorded later are all promoted
    with sqlite3.connect(f"file:{runs / 'rev' / 'adsearch.db'}?mode=ro", uri=True) as db:
        for e in events:
            at = e.at.replace(tzinfo=e.at.tzinfo or timezone.utc).timestamp()
            late = db.execute("SELECT promoted, threshold FROM rungs WHERE abs(rung - ?) < 1e-6 "
                              "AND recorded_at > ?", (e.data["rung"], at)).fetchall()
            assert all(p == 1 and thr is None for p, thr in late), late
            if e.data["rung"] == 1.0:
                assert late  # children reached rung 1 after it was turned off
    text = run_cli(runs, "status", "rev").stdout
    assert "rung 1: pruning stopped" in text and "pruning off" in text
    # the rung check in status stays torch-free
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "adsearch", "status", "rev",
                           "--json"], env=cli_env(runs), capture_output=True, text=True,
                          timeout=60)
    imported = [ln.rsplit("|", 1)[-1].strip() for ln in proc.stderr.splitlines()
                if ln.startswith("import time:")]
    assert proc.returncode == 0 and "adsearch.daemon.agreement" in imported
    assert not [m for m in imported if m == "torch" or m.startswith("torch.")]


def test_daemon_keeps_rungs_that_agree_and_no_rung_check_keeps_any(tmp_path: Path) -> None:
    runs, snap = _search(tmp_path, "agree", "agr")
    assert snap["rungs"]["rungs_off"] == []
    a = snap["rungs"]["rungs"][0]["agreement"]
    assert a["n"] >= 3 and a["spearman"] > 0.3
    runs, snap = _search(tmp_path, "reverse", "nocheck", "--no-rung-check")
    assert snap["rungs"]["rungs_off"] == [] and snap["rungs"]["check"]["min"] is None
    assert any(r["stopped"] for r in snap["rungs"]["rungs"] if not r["top"])
