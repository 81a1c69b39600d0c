"""Asynchronous successive halving (``--scheduler asha``): rungs, the live rule in the store
on SQLite and PostgreSQL, the LM and translation children checking fractional rungs, the
controller's reward for truncated children (and that it still learns), bad options, and a
real daemon killed with -9 (itself and a child) whose rung tables survive ``resume``."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import statistics
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from store_backends import *  # noqa: F403  (fixtures: store_url, store)
from test_daemon_support import alive, check_exactly_once, counts, daemon_pid, run_cli, wait_for
from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.daemon.config import SearchConfig
from adsearch.daemon.rundir import RunDir
from adsearch.reward import learned_rewards
from adsearch.rungs import LazySink, decide, rungs_for
from adsearch.store import Store
from adsearch.store.records import NewTrial
from adsearch.tasks import Budget, get_task


def _trials(store: Store, sid: int, n: int) -> list[Any]:
    return store.add_trials(sid, [NewTrial(pattern=[], pattern_hash=f"h{i}", tokens=[], controller_version=0, logp=0.0, seed=i) for i in range(n)])


def _rule(keep: float, min_trials: int) -> Any:
    return lambda vs, own: decide(vs, own, keep=keep, min_trials=min_trials)


def test_rungs_and_schedule() -> None:
    assert rungs_for(1, 9, 3) == (1.0, 3.0)
    assert rungs_for(0.25, 2, 2) == (0.25, 0.5, 1.0)
    cfg = SearchConfig(name="a", task="synthetic", scheduler="asha", min_epochs=1, max_epochs=27, eta=3).validate()
    s = cfg.schedule()
    assert s is not None and s.rungs == (1.0, 3.0, 9.0) and s.top == 27.0 and s.min_trials == 3
    assert s.keep == pytest.approx(1 / 3) and cfg.child_budget().epochs == 27
    old = SearchConfig(name="a", task="cifar10", prune_epoch=1, prune_quantile=0.25, task_config={"epochs": 4}).validate()
    assert old.schedule() is not None and old.schedule().rungs == (1.0,)  # type: ignore[union-attr]
    assert old.schedule().keep == 0.75 and old.schedule().top == 4.0  # type: ignore[union-attr]


def test_a_child_is_decided_by_the_values_live_at_its_rung(store: Store) -> None:
    """Each record sees every earlier one at the same rung; a retried child replaces its
    row; the top rung records without a decision; the summary counts it all."""
    sid = store.create_search("s", {}).id
    t = _trials(store, sid, 6)
    rule = _rule(1 / 3, 3)
    assert store.record_rung(t[0].id, 1.0, 1.0, 0.5, rule).promoted is True  # too few to stop
    assert store.record_rung(t[1].id, 1.0, 1.0, 0.2, rule).threshold is None
    d = store.record_rung(t[2].id, 1.0, 1.0, 0.1, rule)  # [0.5, 0.2, 0.1]: q(2/3) = 0.3
    assert d.promoted is False and d.threshold == pytest.approx(0.3) and d.count == 3
    d = store.record_rung(t[3].id, 1.0, 1.2, 0.4, rule)  # [0.5 0.2 0.1 0.4]: q(2/3) = 0.4
    assert d.promoted is True and d.threshold == pytest.approx(0.4)
    # the same trial again (a retried child): its old value no longer counts
    d = store.record_rung(t[3].id, 1.0, 1.0, 0.15, rule)
    assert d.count == 4 and d.promoted is False
    assert store.record_rung(t[0].id, 3.0, 3.0, 0.7, None).promoted is None  # the top rung
    rows = store.rung_rows(sid)
    assert [(r.trial_id, r.rung) for r in rows] == [(t[i].id, 1.0) for i in range(4)] + [(t[0].id, 3.0)]
    summary = store.rung_summary(sid)
    assert summary[0] == {"rung": 1.0, "reached": 4, "best": 0.5, "promoted": 2, "stopped": 2,
                          "threshold": pytest.approx(0.2)}
    assert summary[1]["reached"] == 1 and summary[1]["threshold"] is None


def test_truncated_rewards_are_moved_onto_the_full_budget_scale(store: Store) -> None:
    """A stopped child learns from its rung value plus the median gain from that rung to
    the full budget (adsearch.reward; the rule's own tests are in test_reward.py), read
    from the store's rung tables: the order at the rung is kept."""
    sid = store.create_search("s", {}).id
    t = _trials(store, sid, 4)
    for tid, v in ((t[0].id, 0.1), (t[1].id, 0.3), (t[2].id, 0.5)):
        store.record_rung(tid, 1.0, 1.0, v, _rule(0.5, 9))
    store.record_rung(t[2].id, 3.0, 3.0, 0.8, None)
    store.record_rung(t[3].id, 3.0, 3.0, 0.9, None)
    for rec, reward, metrics in ((t[0], 0.1, {"truncated": 1.0, "truncated_at_rung": 1.0}),
                                 (t[1], 0.3, {"truncated": 1.0, "truncated_at_rung": 1.0}),
                                 (t[2], 0.8, {}), (t[3], 0.9, {})):
        store.update_trial(rec.id, state="running")
        store.finish_trial(rec.id, reward, metrics, [], 1.0, state="done")
    out = learned_rewards(store, sid, [x.id for x in t], 0.0)
    assert out[t[2].id] == 0.8 and out[t[3].id] == 0.9  # full results keep their reward
    # D_1 = 0.8 - 0.5 (the one trial with both values): 0.1 + 0.3 and 0.3 + 0.3
    assert out[t[0].id] == pytest.approx(0.4) and out[t[1].id] == pytest.approx(0.6)


def test_learned_rewards_read_only_the_rung_values_of_finished_fed_trials(store: Store) -> None:
    """With ``fed`` (what the daemon passes), a child that is still running, or finished but
    not yet fed, does not move the offset: the controller learns the same numbers however
    late a busy daemon gets to its update (a dashboard polled hard while a seeded search ran
    once changed a learned reward this way)."""
    sid = store.create_search("s", {}).id
    t = _trials(store, sid, 4)
    store.record_rung(t[0].id, 1.0, 1.0, 0.5, _rule(0.5, 9))
    store.record_rung(t[0].id, 3.0, 3.0, 0.8, None)  # fed before: D_1 = 0.3
    store.record_rung(t[1].id, 1.0, 1.0, 0.1, _rule(0.5, 9))  # the stopped child in the batch
    store.record_rung(t[2].id, 1.0, 1.0, 0.6, _rule(0.5, 9))  # still running:
    store.record_rung(t[2].id, 3.0, 3.0, 1.6, None)  # its gain (1.0) would make the median 0.65
    for rec, reward, metrics in ((t[0], 0.8, {}),
                                 (t[1], 0.1, {"truncated": 1.0, "truncated_at_rung": 1.0})):
        store.update_trial(rec.id, state="running")
        store.finish_trial(rec.id, reward, metrics, [], 1.0, state="done")
    assert learned_rewards(store, sid, [t[1].id], 0.0)[t[1].id] == pytest.approx(0.75)
    out = learned_rewards(store, sid, [t[1].id], 0.0, fed={t[0].id})
    assert out[t[1].id] == pytest.approx(0.4)
    assert learned_rewards(store, sid, [t[1].id], 0.0, fed=set())[t[1].id] == pytest.approx(0.1)


@pytest.fixture
def rung_store(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = Store(url)
    sid = store.create_search("s", {}).id
    yield url, store, sid
    store.close()


def test_a_budget_records_through_the_reporter_it_is_given(rung_store: Any) -> None:
    """Budget (tasks/result.py) opens no store: it records through its reporter, here a
    LazySink over the real store, opened at the first rung and kept; a budget that names a
    store but got no reporter refuses to prune rather than silently not record."""
    url, store, sid = rung_store
    high, cut = _trials(store, sid, 2)
    store.record_rung(high.id, 1.0, 1.0, 0.9, _rule(0.5, 2))
    spec = {"epochs": 3, "rungs": [1.0], "top_rung": 3.0, "keep": 0.5, "min_trials": 2,
            "store_url": url, "trial_id": cut.id}
    with pytest.raises(ValueError, match="no reporter"):
        Budget.from_dict(spec).prune_now(1.0, 0.1, last=False)
    opened: list[str] = []

    def open_store() -> Store:
        opened.append(url)
        return store

    b = Budget.from_dict(spec, reporter=LazySink(open_store))
    assert opened == [] and "reporter" not in b.to_dict() and Budget.from_dict(b.to_dict()) == b
    assert b.prune_now(0.5, 0.1, last=False) is False and opened == []  # no rung yet
    assert b.prune_now(1.0, 0.1, last=False) is True  # below the 0.5 quantile of 0.1, 0.9
    assert b.truncation() == {"truncated": 1.0, "truncated_at_epoch": 1.0,
                              "truncated_at_rung": 1.0, "prune_below": pytest.approx(0.5)}
    assert b.prune_now(3.0, 0.2, last=True) is False and opened == [url]  # opened once
    rows = {(r.trial_id, r.rung): r for r in store.rung_rows(sid)}
    assert rows[(cut.id, 1.0)].promoted is False and rows[(cut.id, 3.0)].promoted is None


def _lm_setup(data_slices: Path, tmp_path: Path) -> tuple[Any, Any, int]:
    from test_tasks_lm import _small_corpus

    from adsearch.tasks.lm import _corpus, batchify, windows

    task = get_task("wikitext2")
    cfg = task.config_from_dict({"data": str(_small_corpus(data_slices, tmp_path / "wt")), "d_model": 32, "d_ff": 64, "n_heads": 2, "n_layers": 1, "bptt": 32, "batch_size": 8, "curve_points": 0, "test": False})
    per_epoch = len(windows(batchify(_corpus(cfg).train, cfg.batch_size), cfg.bptt))
    return task, cfg, per_epoch


def test_lm_child_checks_a_fractional_rung(data_slices: Path, tmp_path: Path, rung_store: Any) -> None:
    url, store, sid = rung_store
    task, cfg, per_epoch = _lm_setup(data_slices, tmp_path)
    rung = 10 / per_epoch  # a fraction of an epoch: step 10 of 30
    assert rung < 0.5
    high, low, cut, full = _trials(store, sid, 4)
    rule = _rule(0.5, 2)
    store.record_rung(high.id, rung, rung, 1e9, rule)
    spec = {"steps": 30, "rungs": [rung], "keep": 0.5, "min_trials": 2, "store_url": url}
    res = task.run_child(cfg, None, Budget.from_dict({**spec, "trial_id": cut.id}, reporter=store), "cpu", 0)
    assert res.metrics["truncated"] == 1.0 and res.metrics["steps"] == 10
    assert res.metrics["truncated_at_rung"] == pytest.approx(rung) and "test_ppl" not in res.metrics
    assert res.reward == pytest.approx(80.0 / res.metrics["val_ppl"])
    store.record_rung(low.id, rung, rung, -1e9, rule)
    store.record_rung(high.id, rung, rung, -1e9, rule)  # now every other value is low
    res = task.run_child(cfg, None, Budget.from_dict({**spec, "trial_id": full.id}, reporter=store), "cpu", 0)
    assert "truncated" not in res.metrics and res.metrics["steps"] == 30
    assert len(res.curve) == 2 and res.curve[0]["step"] == 10  # the rung point, then the end
    rows = {r.trial_id: r for r in store.rung_rows(sid)}
    assert rows[cut.id].promoted is False and rows[full.id].promoted is True
    assert rows[cut.id].value == pytest.approx(80.0 / res.curve[0]["val_metric"])  # same seed


def test_translation_child_checks_a_fractional_rung(data_slices: Path, rung_store: Any) -> None:
    url, store, sid = rung_store
    task = get_task("translation")  # 400 training pairs: 13 steps per epoch at batch 32
    cfg = task.config_from_dict({"data": str(data_slices / "multi30k-en-fr"), "min_freq": 1, "eval_limit": 20, "d_model": 32, "d_ff": 64, "n_heads": 2, "n_layers": 1, "batch_size": 32, "warmup_steps": 5, "test_split": None})
    high, cut, full = _trials(store, sid, 3)
    store.record_rung(high.id, 0.5, 0.5, 2.0, _rule(0.5, 2))  # BLEU/100 can never reach 2
    spec = {"steps": 20, "rungs": [0.5], "keep": 0.5, "min_trials": 2, "store_url": url}
    res = task.run_child(cfg, None, Budget.from_dict({**spec, "trial_id": cut.id}, reporter=store), "cpu", 0)
    assert res.metrics["truncated"] == 1.0 and res.metrics["steps"] == 7  # ceil(0.5 * 13)
    assert res.reward == pytest.approx(res.metrics["val_bleu"] / 100.0)
    store.record_rung(high.id, 0.5, 0.5, -1.0, _rule(0.5, 2))
    res = task.run_child(cfg, None, Budget.from_dict({**spec, "trial_id": full.id}, reporter=store), "cpu", 0)
    assert "truncated" not in res.metrics and res.metrics["steps"] == 20
    assert [r.promoted for r in store.rung_rows(sid) if r.trial_id in (cut.id, full.id)] == [False, True]


def test_synthetic_child_reports_a_curve_and_stops_at_a_rung(rung_store: Any) -> None:
    url, store, sid = rung_store
    task = get_task("synthetic")
    cfg = task.config_from_dict({"epochs": 9})
    pats = task.space(cfg).sample(random.Random(0))
    free = task.run_child(cfg, pats, Budget(epochs=9), "cpu", 3)
    assert [p["epoch"] for p in free.curve] == [float(e) for e in range(1, 10)]
    assert free.reward == free.curve[-1]["val_metric"] and "truncated" not in free.metrics
    high, cut = _trials(store, sid, 2)
    store.record_rung(high.id, 3.0, 3.0, 5.0, _rule(1 / 3, 2))
    b = Budget(epochs=9, rungs=(1.0, 3.0), top_rung=9.0, keep=1 / 3, min_trials=2, store_url=url, trial_id=cut.id, reporter=store)
    res = task.run_child(cfg, pats, b, "cpu", 3)
    assert len(res.curve) == 3 and res.metrics["truncated_at_rung"] == 3.0
    assert res.reward == res.curve[-1]["val_metric"] == free.curve[2]["val_metric"]


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("args", "message"), [
    (["--eta", "1"], "--eta 1.0: must be a number greater than 1"),
    (["--min-epochs", "9", "--max-epochs", "9"], "the rungs exceed the budget"),
    (["--max-epochs", "12", "--child-epochs", "6"], "--max-epochs 12 exceeds the child budget"),
    (["--task", "nocurve"], "task 'nocurve' reports no learning curve"),
])
def test_bad_asha_options_are_refused_and_nothing_is_written(tmp_path: Path, args: list[str], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from adsearch.tasks import registry

    # a registered task that is not in PRUNABLE: it never calls budget.prune_now
    monkeypatch.setitem(registry.TASKS, "nocurve", "adsearch.tasks.synthetic:SyntheticTask")
    base = {"--task": "synthetic", "--min-epochs": "1", "--max-epochs": "9"}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    argv = ["start", "--name", "b", "--run-dir", str(tmp_path / "b"), "--scheduler", "asha",
            *[x for kv in base.items() for x in kv]]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 1, res.output
    assert res.output.startswith("error: ") and message in " ".join(res.output.split()), res.output
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------------- the controller learns
def test_controller_learns_on_the_synthetic_task_with_asha(tmp_path: Path) -> None:
    """The real pieces in one process: the synthetic child with its curve and a live ASHA
    budget against a SQLite store, truncated results turned into rewards by
    adsearch.reward.learned_rewards, and the transformer controller updated on them. The controller
    must reach a rolling mean clean reward of 0.85 (random search: ~0.28), and ASHA must
    have stopped many children early."""
    import torch

    from adsearch.controller import make_controller

    torch.set_num_threads(1)
    url = f"sqlite:///{tmp_path / 'l.db'}"
    store = Store(url)
    sid = store.create_search("l", {}).id
    task = get_task("synthetic")
    cfg = task.config_from_dict({"epochs": 9, "noise_sd": 0.02})
    space = task.space(cfg)
    ctrl = make_controller("transformer", space, seed=0)
    window: deque[float] = deque(maxlen=16)
    best, n, cut = 0.0, 0, 0
    try:
        while n < 1600 and best < 0.85:
            samples = ctrl.sample(ctrl.config.batch_size)
            recs = store.add_trials(sid, [NewTrial(pattern=[p.to_dict() for p in s.patterns], pattern_hash=f"{n}-{i}", tokens=list(s.tokens), controller_version=0, logp=s.logp, seed=n + i) for i, s in enumerate(samples)])
            for rec, s in zip(recs, samples, strict=True):
                b = Budget(epochs=9, rungs=(1.0, 3.0), top_rung=9.0, keep=1 / 3, min_trials=3, store_url=url, trial_id=rec.id, reporter=store)
                res = task.run_child(cfg, list(s.patterns), b, "cpu", rec.id)
                cut += int(bool(res.metrics.get("truncated")))
                store.update_trial(rec.id, state="running")
                store.finish_trial(rec.id, res.reward, res.metrics, res.curve, 0.0, state="done")
                window.append(res.metrics["clean_reward"])
            rewards = learned_rewards(store, sid, [r.id for r in recs], 0.0)
            ctrl.update([(s, rewards[r.id]) for s, r in zip(samples, recs, strict=True)])
            n += len(samples)
            if len(window) == 16:
                best = max(best, statistics.fmean(window))
    finally:
        store.close()
    assert best >= 0.85, f"controller peaked at {best:.3f} in {n} samples with ASHA"
    assert cut > n / 4, (cut, n)


# ---------------------------------------------------------------------- crashes and resume
def _rung_rows(run_dir: Path) -> list[Any]:
    store = Store(RunDir(run_dir).store_url(), readonly=True)
    try:
        return store.rung_rows(store.get_search("a").id)
    finally:
        store.close()


def test_asha_survives_kill9_of_a_child_and_the_daemon_and_resume_keeps_rungs(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_dir = runs / "a"
    run_cli(runs, "start", "--task", "synthetic", "--task-config", '{"sleep": 1.8, "epochs": 9}',
            "--scheduler", "asha", "--min-epochs", "1", "--max-epochs", "9", "--eta", "3",
            "--workers", "2", "--budget-trials", "14", "--batch-size", "4",
            "--controller", "random", "--name", "a",
            "--no-recheck")  # every result here has rung rows (test_recheck: re-checks have none)
    from test_daemon_crash import running_trials

    # kill -9 one child mid-training: its trial is retried and its rung rows replaced
    first = wait_for(lambda: running_trials(run_dir) or None, 60, "a running child")
    os.kill(first[0][1], signal.SIGKILL)
    wait_for(lambda: counts(run_dir)["done"] >= 5 and len(running_trials(run_dir)) == 2, 90,
             "5 results and 2 running children")
    before = {(r.trial_id, r.rung): r for r in _rung_rows(run_dir)}
    assert {r for _, r in before} >= {1.0}
    pid = daemon_pid(run_dir)
    assert pid is not None
    in_flight = running_trials(run_dir)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(alive(c) for _, c, _ in in_flight) and not alive(pid), 10, "all gone")
    run_cli(runs, "resume", "a")
    wait_for(lambda: daemon_pid(run_dir) is None, 120, "the daemon to finish")
    store, search = check_exactly_once(RunDir(run_dir))
    try:
        assert store.get_search("a").state == "finished"
        results = store.results(search.id)
        assert len(results) == 14
        assert store.get_trial(first[0][0]).attempts >= 2
    finally:
        store.close()
    after = {(r.trial_id, r.rung): r for r in _rung_rows(run_dir)}
    done_before = {tid for tid, _ in before} - {t for t, _, _ in in_flight}
    for key, row in before.items():  # resume kept every row of a trial that had finished
        if key[0] in done_before:
            assert after[key].value == row.value and after[key].promoted == row.promoted
    for r in results:  # every result is explained by its rung rows
        rows = {rung: row for (tid, rung), row in after.items() if tid == r.trial_id}
        if r.metrics.get("truncated"):
            rung = r.metrics["truncated_at_rung"]
            assert rows[rung].promoted is False and rows[rung].value == r.reward
            assert max(rows) == rung
        else:
            assert rows[9.0].promoted is None and rows[9.0].value == r.reward
            assert rows[1.0].promoted and rows[3.0].promoted
    assert any(r.metrics.get("truncated") for r in results)
    snap = json.loads(run_cli(runs, "status", "a", "--json").stdout)
    rungs = {r["rung"]: r for r in snap["rungs"]["rungs"]}
    assert rungs[1.0]["reached"] == 14 and rungs[9.0]["top"]
    assert rungs[1.0]["promoted"] + rungs[1.0]["stopped"] == 14
    assert rungs[3.0]["reached"] == rungs[1.0]["promoted"]
    assert rungs[9.0]["reached"] == rungs[3.0]["promoted"] == sum(1 for r in results if not r.metrics.get("truncated"))
    assert rungs[1.0]["threshold"] is not None and math.isfinite(rungs[1.0]["threshold"])
    text = run_cli(runs, "status", "a").stdout
    assert "rungs (asha" in text and "full budget" in text
