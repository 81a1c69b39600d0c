"""Failures are not results: the classification of a child's exception, the failure breaker,
and what the daemon, ``status``, ``list`` and ``export`` make of them, with real daemon runs
(child subprocesses, a SQLite store) and the CLI through CliRunner."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest
from store_backends import *  # noqa: F403  (fixtures: pg_base_url)
from store_backends import _fresh_database
from test_cli_search import assert_clean_error, cli
from test_daemon_support import dump_db

from adsearch.command import runnable
from adsearch.daemon.config import SearchConfig
from adsearch.daemon.failures import FailureBreaker, classify
from adsearch.daemon.launch import create_search
from adsearch.daemon.rundir import RunDir
from adsearch.daemon.runner import run_daemon
from adsearch.errors import ConfigError, DataError, PatternError, SpaceMismatchError
from adsearch.store import Store
from adsearch.tasks.synthetic import BadPatternError


def _tagged(exc: Exception, **attrs: str) -> Exception:
    for k, v in attrs.items():
        setattr(exc, k, v)
    return exc


@pytest.mark.parametrize("exc,want", [
    (NameError("name 'x' is not defined"), "error"),
    (ModuleNotFoundError("No module named 'nope'"), "error"),
    (ImportError("cannot import name 'y'"), "error"),
    (TypeError("f() takes 1 positional argument"), "error"),
    (AttributeError("'NoneType' object has no attribute 'a'"), "error"),
    (FileNotFoundError(2, "No such file or directory"), "error"),
    (KeyError("lr"), "error"),
    (PatternError("size 9 > 7"), "bad_pattern"),
    (FloatingPointError("overflow"), "bad_pattern"),
    (BadPatternError("synthetic"), "bad_pattern"),
    (RuntimeError("something deep in training"), "bad_pattern"),
    (ConfigError("bad lr"), "config"),
    (DataError("no data"), "config"),
    (MemoryError(), "infra"),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "infra"),
    (OSError(errno.ENOSPC, "No space left on device"), "infra"),
    # what another process says wins over the carrier's own type
    (_tagged(RuntimeError("script killed"), adsearch_failure="infra"), "infra"),
    (_tagged(RuntimeError("exit 1"), user_exception="NameError"), "error"),
    (_tagged(RuntimeError("exit 1"), user_exception="torch.cuda.OutOfMemoryError"), "infra"),
    (_tagged(RuntimeError("exit 1"), user_exception="PatternError"), "bad_pattern"),
    (_tagged(NameError("x"), adsearch_failure="bad_pattern"), "bad_pattern"),
    (_tagged(ValueError("x"), adsearch_failure="nonsense"), "bad_pattern"),  # unknown tag: ignored
    # patterns for another site count: the search's space is wrong, not one pattern (issue 23)
    (SpaceMismatchError("attach: written for space conv-5 (5 site(s)), model has 4"), "config"),
    (_tagged(RuntimeError("exit 1"), user_exception="SpaceMismatchError"), "config"),
])
def test_classify(exc: Exception, want: str) -> None:
    assert classify(exc) == want


def test_breaker_consecutive_and_share() -> None:
    b = FailureBreaker(3, None, 20)
    assert [b.observe(f, "E") for f in (True, True, False, True, True)] == [None] * 5
    why = b.observe(True, "NameError: x")
    assert why is not None and "3 trials in a row failed" in why and "NameError: x" in why
    s = FailureBreaker(None, 0.5, 4)
    assert [s.observe(f) for f in (True, True, True)] == [None] * 3  # window not full yet
    assert s.observe(False) is None  # 3 of 4 > 0.5, but the last one succeeded: no streak rule
    why = s.observe(True, "boom")  # window: T T F T -> 3/4
    assert why is not None and "3 of the last 4 trials failed" in why
    off = FailureBreaker(None, None, 4)
    assert all(off.observe(True) is None for _ in range(50)) and off.failures == 50


@pytest.mark.parametrize("changes,needle", [
    ({"max_consecutive_failures": 0}, "--max-consecutive-failures"),
    ({"max_failure_share": 1.5}, "--max-failure-share"),
    ({"max_failure_share": 0.0}, "--max-failure-share"),
    ({"failure_window": 0}, "failure_window"),
])
def test_breaker_options_are_validated(changes: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        SearchConfig(name="x", task="synthetic", **changes).validate()


def _make(tmp_path: Path, name: str, **kw: Any) -> RunDir:
    opts: dict[str, Any] = {"task": "synthetic", "controller": "random", "batch_size": 4,
                            "workers": 2, "budget_trials": 12}
    opts.update(kw)
    return create_search(SearchConfig(name=name, **opts), RunDir(tmp_path / "runs" / name))


def test_every_child_failing_trips_the_breaker(tmp_path: Path) -> None:
    """The issue's reproduction: bad_fraction 1.0 must not end "finished, 12 done"."""
    run = _make(tmp_path, "allbad", task_config={"bad_fraction": 1.0},
                max_consecutive_failures=5)
    daemon = run_daemon(str(run.path))
    assert not daemon.finished and daemon.fatal and "5 trials in a row failed" in daemon.fatal
    runs = tmp_path / "runs"
    with Store(run.store_url(), readonly=True) as st:
        search = st.get_search("allbad")
        assert search.state == "failed"
        assert st.bad_patterns(search.id)[0] == st.counts(search.id)["done"] < 12
        assert [e.kind for e in st.events(search.id) if e.kind == "daemon.breaker"] == ["daemon.breaker"]
    snap = json.loads(cli(runs, "status", "allbad", "--json").stdout)
    assert snap["top"] == [] and snap["best"] is None  # no result earned by failing is "best"
    assert snap["bad_patterns"]["count"] >= 5
    assert any("trials in a row failed" in w and "attempt-1.log" in w for w in snap["waiting"])
    text = cli(runs, "status", "allbad").stdout
    assert "bad patterns: " in text and "BadPatternError" in text
    before = dump_db(run.path / "adsearch.db")
    out = tmp_path / "best.json"
    assert_clean_error(cli(runs, "export", "allbad", "--best", "-o", str(out)),
                       "has no successful trial", "BadPatternError")
    assert not out.exists() and dump_db(run.path / "adsearch.db") == before
    listing = cli(runs, "list").stdout
    row = next(ln for ln in listing.splitlines() if "allbad" in ln)
    assert "failed" in row and "0.0000" not in row  # best: "-", not the failure reward


def test_some_bad_patterns_are_counted_and_skipped(tmp_path: Path) -> None:
    run = _make(tmp_path, "mixed", task_config={"bad_fraction": 0.4}, failure_reward=5.0,
                budget_trials=12)
    daemon = run_daemon(str(run.path))
    assert daemon.finished and daemon.fatal is None
    runs = tmp_path / "runs"
    with Store(run.store_url(), readonly=True) as st:
        sid = st.get_search("mixed").id
        bad = [t for t in st.trials(sid) if t.error]
        assert st.get_search("mixed").state == "finished" and len(bad) >= 2
        assert st.bad_patterns(sid) == (len(bad), bad[-1].error)
    snap = json.loads(cli(runs, "status", "mixed", "--json").stdout)
    # the failure reward (5.0) beats every real reward, yet is never shown as best
    assert snap["best"]["reward"] < 5.0 and all(r["reward"] < 5.0 for r in snap["top"])
    assert f"bad patterns: {len(bad)} (last error: BadPatternError" in cli(runs, "status", "mixed").stdout
    out = tmp_path / "best.json"
    res = cli(runs, "export", "mixed", "--best", "-o", str(out))
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["provenance"]["reward"] == snap["best"]["reward"]
    assert "5.0000" not in cli(runs, "list").stdout


def test_a_bug_in_the_code_fails_the_search_at_once(tmp_path: Path) -> None:
    """A NameError in every child is no result: the first one stops the search as failed,
    its trial is requeued uncounted, and status names the error and the log."""
    run = _make(tmp_path, "bug", task_config={"bug": "NameError"}, workers=1)
    daemon = run_daemon(str(run.path))
    assert not daemon.finished and daemon.fatal
    with Store(run.store_url(), readonly=True) as st:
        search = st.get_search("bug")
        assert search.state == "failed"
        counts = st.counts(search.id)
        assert counts["done"] == 0 and counts["failed"] == 0 and counts["queued"] >= 1
        first = st.get_trial(1)
        assert first.state == "queued" and first.attempts == 0 and "NameError" in (first.error or "")
        assert any(e.kind == "daemon.code_error" for e in st.events(search.id))
    snap = json.loads(cli(tmp_path / "runs", "status", "bug", "--json").stdout)
    why = " ".join(snap["waiting"])
    assert "NameError: synthetic bug" in why and "bug in the task or your code" in why
    assert str(run.trial_dir(1) / "attempt-1.log") in why


def test_space_is_the_searchs_own(tmp_path: Path) -> None:
    """--space seq-2 reaches the children (it used to be rebuilt from the task config, so
    every trial failed with a PatternError); a space that cannot fit is refused, nothing written."""
    runs = tmp_path / "runs"
    res = cli(runs, "start", "--task", "synthetic", "--name", "seq", "--space", "seq-2",
              "--budget-trials", "4", "--workers", "2", "--controller", "random",
              "--foreground")
    assert res.exit_code == 0, res.output
    snap = json.loads(cli(runs, "status", "seq", "--json").stdout)
    assert snap["state"] == "finished" and snap["budget"]["drawn"] == 4  # then the re-check
    assert snap["counts"]["done"] == 4 + snap["recheck"]["total"]
    assert snap["config"]["space"] == "seq-2" and snap["bad_patterns"]["count"] == 0
    spec = json.loads((runs / "seq" / "trials" / "1" / "spec.json").read_text())
    assert spec["space"] == "seq-2" and spec["task_config"]["space"] == "seq-2"
    for args, needle in (
        (["--task", "synthetic", "--space", "seq-2", "--task-config", '{"space": "conv-3"}'],
         "--task-config space 'conv-3' contradicts --space seq-2"),
        (["--task", "cifar10", "--space", "seq-2"], "task cifar10 has dropout sites for space conv-3"),
    ):
        assert_clean_error(cli(runs, "start", "--name", "refused", *args), needle)
        assert not (runs / "refused").exists()


def test_child_refuses_a_spec_whose_space_the_task_does_not_build(tmp_path: Path) -> None:
    """A search written before the space was checked: the child reports a config error
    instead of decoding patterns for another space (which failed as a 'bad pattern')."""
    from adsearch.daemon.child import run as run_child

    spec = {"trial_id": 1, "attempt": 1, "task": "synthetic", "space": "seq-2",
            "task_config": {"space": "conv-3"}, "patterns": [], "budget": None,
            "device": "cpu", "seed": 0, "threads": 1}
    doc = run_child(spec)
    assert doc["status"] == "config" and "space seq-2" in doc["error"], doc


def test_a_bug_in_a_trial_script_fails_the_search(tmp_path: Path) -> None:
    """Script mode: the script's uncaught NameError crosses the process boundary as
    ``user_exception`` and is classified as a bug, not as a bad pattern."""
    import shlex
    import sys

    script = tmp_path / "train.py"
    script.write_text("import adsearch.trial\n\ntrial = adsearch.trial.current()\n"
                      "trial.finish(undefined_name)\n")
    cfg = SearchConfig(name="sbug", task="script", controller="random", batch_size=4,
                       workers=1, budget_trials=4,
                       task_config={"command": shlex.join([sys.executable, str(script)]),
                                    "workdir": str(tmp_path), "space": "conv-2"})
    run = create_search(cfg, RunDir(tmp_path / "runs" / "sbug"))
    daemon = run_daemon(str(run.path))
    assert not daemon.finished and daemon.fatal and "NameError" in daemon.fatal
    with Store(run.store_url(), readonly=True) as st:
        search = st.get_search("sbug")
        assert search.state == "failed" and st.counts(search.id)["done"] == 0
    doc = json.loads((run.trial_dir(1) / "result.json").read_text())
    assert doc["status"] == "error" and doc["error_type"] == "NameError"


def test_adsearch_worker_fails_the_search_on_a_code_error(pg_base_url: str,
                                                          tmp_path: Path) -> None:
    """``adsearch worker`` (PostgreSQL queue) applies the same classification: a NameError
    in its child requeues the trial uncounted, fails the search for every host, and the
    worker exits 1 with the error and the log."""
    import random
    import subprocess
    import sys

    from adsearch.patterns import SearchSpace
    from adsearch.patterns.canonical import pattern_hash
    from adsearch.queue.dbqueue import DbQueue
    from adsearch.store import NewTrial

    gen = _fresh_database(pg_base_url)
    url = next(gen)
    try:
        space = SearchSpace.from_name("conv-3")
        pats = [p.to_dict() for p in space.sample(random.Random(0))]
        cfg = SearchConfig(name="wbug", task="synthetic", space="conv-3",
                           task_config={"bug": "AttributeError"}, workers=1)
        with Store(url) as st:
            sid = st.create_search("wbug", cfg.to_dict()).id
            st.set_search_state(sid, "running")
            items = [NewTrial(pattern=pats, pattern_hash=pattern_hash(pats),
                              tokens=space.encode([space.pattern_cls.from_dict(p)  # type: ignore[attr-defined]
                                                   for p in pats]),
                              controller_version=0, logp=-1.0, seed=i) for i in range(3)]
            DbQueue(st, sid).push([t.id for t in st.add_trials(sid, items)])
        proc = subprocess.run([sys.executable, "-m", "adsearch", "worker", "--store", url,
                               "--search", "wbug", "--workers", "1", "--burst", "--work-dir",
                               str(tmp_path / "w")], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, proc.stderr[-2000:]
        err = " ".join(proc.stderr.split())
        assert "its code raised AttributeError" in err and "attempt-1.log" in err
        with Store(url, readonly=True) as st:
            sid = st.get_search("wbug").id
            assert st.get_search("wbug").state == "failed"
            assert st.counts(sid)["queued"] == 3 and st.counts(sid)["done"] == 0
            assert {t.attempts for t in st.trials(sid)} == {0}
            assert [e.kind for e in st.events(sid) if e.kind == "worker.code_error"] == [
                "worker.code_error"]
    finally:
        gen.close()


def test_a_diverged_child_is_a_bad_pattern_not_a_result_of_zero(tmp_path: Path) -> None:
    """cifar10 turns a non-finite loss into reward 0.0 with ``metrics["diverged"]``; the
    child reports that as a bad pattern (the failure reward, skipped by export), not as an
    ordinary reward of 0.0."""
    import random

    from adsearch.daemon.child import run as run_child
    from adsearch.patterns import SearchSpace

    cfg = {"depth": 10, "width": 1, "train_per_class": 30, "epochs": 4, "batch_size": 50,
           "lr": 1e30, "momentum": 0.0, "weight_decay": 0.0, "schedule": "constant"}
    pats = [p.to_dict() for p in SearchSpace.from_name("conv-3").sample(random.Random(0))]
    doc = run_child({"trial_id": 1, "attempt": 1, "task": "cifar10", "space": "conv-3",
                     "task_config": cfg, "patterns": pats, "budget": {"steps": 30},
                     "device": "cpu", "seed": 0, "threads": 1})
    assert doc["status"] == "bad_pattern" and doc["reward"] is None, doc
    assert doc["error"].startswith("training diverged at step ") and doc["metrics"]["diverged"] == 1.0


# ---------------------------------------------------------------- issue 23 §1
_MISFIT_SCRIPT = """\
import torch
from torch import nn

import adsearch.sites
import adsearch.trial

trial = adsearch.trial.current()
model = nn.Sequential(  # two stages (32 px, then 16 px): space conv-2
    nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
    nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
adsearch.sites.attach(model, trial.patterns, example_input=torch.zeros(1, 3, 32, 32))
trial.finish(0.5)
"""


def test_a_space_that_does_not_fit_the_model_stops_the_search(tmp_path: Path) -> None:
    """A --script search whose --space has more sites than the model (the issue's conv-5 for
    a 4-stage ResNet, here conv-3 for a 2-stage net): attach's SpaceMismatchError is a config
    error of the search, so the first child stops it as failed (not a "finished" search of
    bad patterns), with attach's whole message in status, and start exits 1."""
    import shlex
    import sys

    script = tmp_path / "train.py"
    script.write_text(_MISFIT_SCRIPT)
    runs = tmp_path / "runs"
    res = cli(runs, "start", "--script", shlex.join([sys.executable, str(script)]),
              "--space", "conv-3", "--name", "misfit", "--controller", "random",
              "--workers", "2", "--budget-trials", "3", "--batch-size", "3", "--foreground")
    assert res.exit_code == 1, res.output
    assert "the search's space conv-3 does not fit the model" in " ".join(res.stderr.split())
    with Store(RunDir(runs / "misfit").store_url(), readonly=True) as st:
        search = st.get_search("misfit")
        counts = st.counts(search.id)
        assert search.state == "failed" and counts["done"] == 0 and counts["failed"] == 0
        assert st.bad_patterns(search.id)[0] == 0  # no trial was taken for a result
        assert [e.kind for e in st.events(search.id) if e.kind == "daemon.config_error"] == [
            "daemon.config_error"]
    snap = json.loads(cli(runs, "status", "misfit", "--json").stdout)
    assert snap["state"] == "failed" and snap["counts"]["done"] == 0
    why = snap["waiting"][0]
    whole = ("attach: the regularizer is written for space conv-3 (3 site(s)), but this model "
             "has 2 site(s) (2 stage(s): stage0 32x32, stage1 16x16); search or write a conv-2 "
             "pattern set for this model (`adsearch sites` prints its table), or pass the "
             "example_input it trains at: the stage count follows the feature-map resolutions")
    assert why.startswith("search failed: trial ") and whole in why, why
    assert "SpaceMismatchError" in why and "attempt-1.log" in why
    text = " ".join(cli(runs, "status", "misfit").stdout.split())  # Rich wraps at 80 columns
    # (the text spells `adsearch sites` as it runs in this shell: adsearch/command.py)
    assert "waiting: search failed:" in text and " ".join(runnable(whole).split()) in text


def test_a_search_in_which_no_child_succeeded_ends_failed(tmp_path: Path) -> None:
    """A budget below the breaker's threshold: 3 trials, every one a bad pattern, ended
    "finished" with exit 0. A search with not one result is failed (exit 1 in the
    foreground), saying why; one good result among bad ones finishes as before."""
    runs = tmp_path / "runs"
    res = cli(runs, "start", "--task", "synthetic", "--name", "nogood", "--task-config",
              '{"bad_fraction": 1.0}', "--budget-trials", "3", "--workers", "2",
              "--controller", "random", "--batch-size", "3", "--foreground")
    assert res.exit_code == 1, res.output
    err = " ".join(res.stderr.split())
    assert "no child succeeded: 3 bad pattern(s) and 0 trial(s) given up" in err, err
    assert "BadPatternError" in err
    snap = json.loads(cli(runs, "status", "nogood", "--json").stdout)
    assert snap["state"] == "failed" and snap["counts"]["done"] == 3
    assert snap["waiting"][0].startswith("search failed: ") and "no child succeeded" in (
        snap["waiting"][0])
    # trials given up (out of attempts) are no result either
    run = _make(tmp_path, "lost", task_config={"sleep": 5.0}, child_timeout=0.5,
                max_attempts=1, budget_trials=2, workers=2, batch_size=2)
    daemon = run_daemon(str(run.path))
    assert daemon.fatal and "no child succeeded: 0 bad pattern(s) and 2 trial(s) given up" in (
        daemon.fatal) and "timed out" in daemon.fatal
    with Store(run.store_url(), readonly=True) as st:
        assert st.get_search("lost").state == "failed"


@pytest.mark.parametrize("workers", [1, 2])
def test_the_breaker_records_exactly_its_count(tmp_path: Path, workers: int) -> None:
    """--max-consecutive-failures 3 records exactly 3 trials: the one that trips the breaker
    is the last one recorded. Children still running then (with 2 workers, and with 1 the
    slot's next child, started the moment the 3rd ended) are killed and requeued uncounted.
    It recorded 4 before (issue 23 §1)."""
    name = f"exact{workers}"
    run = _make(tmp_path, name, task_config={"bad_fraction": 1.0, "sleep": 0.6},
                max_consecutive_failures=3, workers=workers, budget_trials=12, batch_size=4)
    daemon = run_daemon(str(run.path))
    assert daemon.fatal and "3 trials in a row failed" in daemon.fatal
    with Store(run.store_url(), readonly=True) as st:
        search = st.get_search(name)
        counts = st.counts(search.id)
        assert search.state == "failed"
        assert counts["done"] == 3 and st.bad_patterns(search.id)[0] == 3, counts
        assert counts.get("failed", 0) == 0 and counts.get("running", 0) == 0
        done = [t for t in st.trials(search.id) if t.state == "done"]
        last = max(done, key=lambda t: t.finished_at)
        # the message names the trial that tripped it, which is the last to end
        assert f"(log of trial {last.id}: " in daemon.fatal, daemon.fatal
        assert str(run.trial_dir(last.id) / "attempt-1.log") in daemon.fatal
        for t in st.trials(search.id, states=["queued"]):
            assert t.attempts == 0  # an interrupted run is not counted
