"""The daemon loop in this process, with real child subprocesses and a real SQLite store:
an end-to-end synthetic search, bad patterns as results, a child killed with SIGKILL,
timeouts, the wall-time budget, and slot planning."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from test_daemon_support import check_exactly_once

from adsearch.daemon.config import SearchConfig
from adsearch.daemon.launch import create_search
from adsearch.daemon.rundir import RunDir, pid_alive
from adsearch.daemon.runner import run_daemon
from adsearch.daemon.slots import plan_slots
from adsearch.errors import ConfigError
from adsearch.store import Store


def make(tmp_path: Path, name: str = "s", **kw: Any) -> RunDir:
    opts: dict[str, Any] = {"task": "synthetic", "controller": "random", "batch_size": 4,
                            "workers": 2, "budget_trials": 8}
    opts.update(kw)
    return create_search(SearchConfig(name=name, **opts), RunDir(tmp_path / name))


def test_end_to_end_transformer(tmp_path: Path) -> None:
    run = make(tmp_path, controller="transformer", budget_trials=12)
    daemon = run_daemon(str(run.path))
    assert daemon.finished
    store, search = check_exactly_once(run)
    # 12 search trials, then the re-check: the top 3 patterns on 2 more seeds (issue 19 §5)
    assert store.counts(search.id, purposes=["search"])["done"] == 12
    assert store.counts(search.id, purposes=["recheck"])["done"] == 6
    assert store.get_search("s").state == "finished"
    assert daemon.controller.version == 3  # 12 results / batch 4: re-check runs are no sample
    for t in store.trials(search.id):
        assert t.attempts == 1 and t.pid is not None and not pid_alive(t.pid)
        assert (run.trial_dir(t.id) / "attempt-1.log").read_text().startswith("[child] trial")
    assert run.daemon_pid() is None and not run.pid_file.exists()
    store.close()


def test_bad_patterns_are_results_not_retries(tmp_path: Path) -> None:
    run = make(tmp_path, task_config={"bad_fraction": 0.3, "nan_fraction": 0.3},
               failure_reward=-1.0, budget_trials=16)
    run_daemon(str(run.path))
    store, search = check_exactly_once(run)
    kinds: list[str] = []
    for t in store.trials(search.id):
        (res,) = store.results(search.id, [t.id])
        assert t.state == "done" and t.attempts == 1  # never retried
        if res.metrics.get("bad_pattern"):
            assert res.reward == -1.0
            kind = (t.error or "").split(":")[0]
            assert kind in ("BadPatternError", "non-finite reward nan (training diverged)"), t.error
            kinds.append("raised" if kind == "BadPatternError" else "nan")
        else:
            assert res.reward is not None and res.reward > -1.0 and t.error is None
    # 60% of patterns are bad (30% raise, 30% NaN); 16 draws: both kinds show up
    assert kinds.count("raised") >= 2 and kinds.count("nan") >= 2, kinds
    store.close()


def test_child_killed_by_sigkill_is_requeued_then_finishes(tmp_path: Path) -> None:
    run = make(tmp_path, task_config={"sleep": 1.0}, workers=1, budget_trials=2)
    victims: list[tuple[int, int]] = []

    def kill_first(daemon: Any) -> None:
        if not victims and daemon.children:
            child = next(iter(daemon.children.values()))
            os.kill(child.pid, signal.SIGKILL)
            victims.append((child.trial_id, child.pid))

    from adsearch.daemon.runner import run_daemon as run_with_hook

    run_with_hook(str(run.path), on_tick=kill_first)
    store, search = check_exactly_once(run)
    (tid, _pid), = victims
    trial = store.get_trial(tid)
    assert trial.state == "done" and trial.attempts == 2
    assert trial.error is None  # a done trial shows its own run's error only (issue 12 §6)
    requeued = [e for e in store.events(search.id, limit=100) if e.kind == "trial_requeued"]
    assert len(requeued) == 1 and "signal 9" in requeued[0].message, requeued
    assert (run.trial_dir(tid) / "attempt-2.log").exists()
    store.close()


def test_timeout_is_retried_up_to_max_attempts_then_failed(tmp_path: Path) -> None:
    run = make(tmp_path, task_config={"sleep": 30.0}, workers=1, budget_trials=1,
               child_timeout=0.5, max_attempts=2)
    run_daemon(str(run.path))
    store, search = check_exactly_once(run)
    (trial,) = store.trials(search.id)
    assert trial.state == "failed" and trial.attempts == 2
    assert "timed out" in (trial.error or "") and "giving up" in (trial.error or "")
    # its one trial was given up: a search with no result is failed, not finished (issue 23)
    assert store.get_search("s").state == "failed"
    store.close()


def test_wall_time_budget_stales_unstarted_trials(tmp_path: Path) -> None:
    run = make(tmp_path, task_config={"sleep": 0.4}, budget_trials=None, budget_minutes=0.15,
               lookahead=3)
    daemon = run_daemon(str(run.path))
    assert daemon.finished
    store, search = check_exactly_once(run)
    c = store.counts(search.id)
    assert c["done"] >= 2 and c["queued"] == c["running"] == 0
    assert c["stale"] >= 1  # the lookahead that never ran
    assert run.elapsed() >= 0.15 * 60
    store.close()


def test_children_see_only_their_gpu(tmp_path: Path) -> None:
    run = make(tmp_path, workers=None, gpus=["3", "5"], budget_trials=4)
    run_daemon(str(run.path))
    store, search = check_exactly_once(run)
    seen = set()
    for t in store.trials(search.id):
        log = (run.trial_dir(t.id) / "attempt-1.log").read_text()
        gpu = "3" if t.slot == 0 else "5"
        assert f"CUDA_VISIBLE_DEVICES='{gpu}'" in log and "device cuda" in log
        seen.add(gpu)
    assert seen == {"3", "5"}
    store.close()


def test_plan_slots_sources() -> None:
    slots, why = plan_slots(gpus=None, slots_per_gpu=2, workers=None,
                            env={"CUDA_VISIBLE_DEVICES": "0,2"}, cpu_count=8)
    assert [(s.name, s.gpu, s.threads) for s in slots] == [
        ("gpu0.0", "0", 2), ("gpu0.1", "0", 2), ("gpu2.2", "2", 2), ("gpu2.3", "2", 2)]
    assert "CUDA_VISIBLE_DEVICES" in why
    slots, why = plan_slots(gpus=["1"], slots_per_gpu=1, workers=None,
                            env={"CUDA_VISIBLE_DEVICES": "0,2"}, cpu_count=8)
    assert [s.gpu for s in slots] == ["1"] and "--gpus" in why
    slots, why = plan_slots(gpus=None, slots_per_gpu=1, workers=3, env={}, cpu_count=8)
    assert [(s.device, s.threads) for s in slots] == [("cpu", 2)] * 3
    slots, why = plan_slots(gpus=None, slots_per_gpu=1, workers=None,
                            env={"CUDA_VISIBLE_DEVICES": ""}, cpu_count=4)
    assert [(s.device, s.threads) for s in slots] == [("cpu", 4)] and "no GPU" in why
    with pytest.raises(ConfigError, match="invalid GPU id 'x'"):
        plan_slots(gpus=["x"], slots_per_gpu=1, workers=None, env={})


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_cpu_workers_split_the_cores_this_process_may_use_not_the_machines() -> None:
    """Pinned to one core (taskset, a cpuset), one worker gets one thread: two pinned searches
    then do not each start 2 threads per child on a 2-core machine and thrash."""
    import subprocess
    import sys

    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from adsearch.daemon.slots import plan_slots; "
            "print(plan_slots(gpus=None, slots_per_gpu=1, workers=1, env={})[0][0].threads)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_synthetic_task_is_a_known_function_and_never_imports_torch() -> None:
    import subprocess
    import sys

    code = r"""
import sys
from adsearch.controller.synthetic import hidden_target
from adsearch.tasks import Budget, get_task
task = get_task("synthetic")
cfg = task.config_from_dict({"noise_sd": 0.1})
space = task.space(cfg)
best = space.decode(hidden_target(space, cfg.target_seed))
a = task.run_child(cfg, best, Budget(), "cpu", seed=7)
b = task.run_child(cfg, best, Budget(), "cpu", seed=7)
assert a.reward == b.reward and a.metrics["clean_reward"] == 1.0, (a, b)
assert abs(a.reward - 1.0) < 0.5
assert "torch" not in sys.modules
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    from adsearch.tasks import get_task

    task = get_task("synthetic")
    with pytest.raises(ConfigError, match="unknown reward 'best'"):
        task.config_from_dict({"reward": "best"})
    with pytest.raises(ConfigError, match="bad_fraction=-1"):
        task.config_from_dict({"bad_fraction": -1})


def test_data_error_in_a_child_stops_the_search_instead_of_burning_the_budget(tmp_path: Path) -> None:
    """A child that hits a DataError (here: its data vanished after the start) says nothing
    about its pattern: the trial is requeued (run not counted) and the search fails, once."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(Path(__file__).resolve().parents[1] / "adsearch" / "data", data)
    run = make(tmp_path, task="cifar10", data=str(data / "cifar10_mini.npz"),
               budget_trials=4, workers=1, child_steps=1,
               task_config={"train_per_class": 8, "val_per_class": 4, "width": 1})
    shutil.rmtree(data)
    daemon = run_daemon(str(run.path))
    assert daemon.fatal and "trial" in daemon.fatal
    store = Store(run.store_url(), readonly=True)
    search = store.get_search("s")
    assert search.state == "failed"
    trials = store.trials(search.id)
    assert {t.state for t in trials} == {"queued"} and all(t.attempts == 0 for t in trials)
    assert not store.results(search.id)
    store.close()


def test_result_written_just_before_a_daemon_crash_is_salvaged_not_rerun(tmp_path: Path) -> None:
    """The child finished and wrote its result, the daemon died before storing it: resume
    records that result (no rerun, attempt not counted again), and feeds it once."""
    import time

    from test_daemon_support import check_exactly_once

    from adsearch.daemon.loop import Daemon

    run = make(tmp_path, task_config={"sleep": 0.2}, workers=1, budget_trials=3, batch_size=3)
    crashed = Daemon(run.path)
    crashed.initialize()
    crashed.loop(time.time())  # starts the first child (and leases the next trial)
    (child,) = crashed.children.values()
    assert child.proc.wait(timeout=30) == 0 and child.result_path.exists()
    child.reap()
    crashed.store.close()
    crashed.lock.release()  # what the kernel does when the daemon is killed
    run_daemon(str(run.path))
    store, search = check_exactly_once(run)
    (start,) = [e for e in store.events(search.id, limit=100) if e.kind == "daemon.start"][1:]
    assert start.data["recovery"]["salvaged"] == 1
    trial = store.get_trial(child.trial_id)
    assert trial.state == "done" and trial.attempts == 1
    assert not (run.trial_dir(child.trial_id) / "attempt-2.log").exists()
    assert store.counts(search.id, purposes=["search"])["done"] == 3
    store.close()


def test_resume_with_a_larger_budget_continues_a_finished_search_exactly_once(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from adsearch.cli.main import app
    from adsearch.daemon.launch import set_budget

    run = make(tmp_path, controller="transformer", budget_trials=4, workers=1)
    assert run_daemon(str(run.path)).finished
    cli = CliRunner()
    res = cli.invoke(app, ["resume", "s", "--run-dir", str(run.path)])
    assert res.exit_code == 1 and "--budget-trials N" in res.output
    for kw, message in (({"trials": 4}, "already has 4 trials"),
                        ({"minutes": 1e-9}, "already run"),
                        ({"trials": 0, "minutes": None}, "0 is no number of trials")):
        with pytest.raises(ConfigError, match=message):
            set_budget(run, **{"minutes": None, "trials": None, **kw})  # type: ignore[arg-type]
    store = Store(run.store_url(), readonly=True)
    assert store.get_search("s").state == "finished"  # refused: nothing written
    assert store.get_search("s").config["budget_trials"] == 4
    store.close()
    assert set_budget(run, minutes=None, trials=10) == "budget set: 4 -> 10 trials"
    store = Store(run.store_url(), readonly=True)
    search = store.get_search("s")
    assert search.state == "stopped" and search.config["budget_trials"] == 10
    assert [e.kind for e in store.events(search.id)][-1] == "search.budget"
    store.close()
    daemon = run_daemon(str(run.path))
    assert daemon.finished
    store, search = check_exactly_once(run)
    assert len(store.trials(search.id, purposes=["search"])) == 10
    assert search.state == "finished"
    # each run ended with a re-check; the second adds only what the new top 3 lack
    rechecks = store.trials(search.id, purposes=["recheck"])
    per_pattern = {h: sum(t.pattern_hash == h for t in rechecks)
                   for h in {t.pattern_hash for t in rechecks}}
    assert set(per_pattern.values()) == {2}
    tops = store.top_trials(search.id, 3, full_only=True, purposes=["search"], distinct=True)
    assert {t.pattern_hash for t, _ in tops} <= set(per_pattern)
    store.close()
