"""Script mode (``adsearch start --script CMD``) with real subprocesses all the way down: the
daemon's child runs the user's command, which reads its trial through ``adsearch.trial``.

Early stopping through ``Trial.report``, a killed script (and a killed child, whose script
must die with it) retried, crashing scripts recorded as bad patterns, the standalone run,
``resume`` and ``adsearch worker`` reusing the stored command, and bad ``start`` input."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from store_backends import *  # noqa: F403  (fixtures: pg_base_url)
from store_backends import _fresh_database
from test_daemon_support import cli_env, run_cli, wait_for

from adsearch.daemon.config import SearchConfig
from adsearch.daemon.launch import create_search, spawn_detached
from adsearch.daemon.rundir import RunDir, pid_alive
from adsearch.daemon.runner import run_daemon
from adsearch.patterns import PatternSet, SearchSpace, save_patternset
from adsearch.store import Store

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "fixtures" / "tiny_script.py"
PY_TRAIN = f"{sys.executable} train.py"


def command(*flags: str) -> str:
    return shlex.join([sys.executable, str(TINY), *flags])


def make(tmp_path: Path, *flags: str, name: str = "s", **kw: Any) -> RunDir:
    opts: dict[str, Any] = {"controller": "random", "batch_size": 4, "workers": 2,
                            "budget_trials": 4, "recheck": False}  # test_recheck covers it
    opts.update(kw)
    task_config = {"command": command(*flags), "workdir": str(tmp_path), "space": "conv-2"}
    cfg = SearchConfig(name=name, task="script", task_config=task_config, **opts)
    return create_search(cfg, RunDir(tmp_path / name))


def results(run: RunDir, name: str = "s") -> tuple[list[Any], dict[int, Any]]:
    with Store(run.store_url(), readonly=True) as st:
        sid = st.get_search(name).id
        return st.trials(sid), {r.trial_id: r for r in st.results(sid)}


def requeued_because(run: RunDir, trial_id: int, name: str = "s") -> str:
    """The reasons the trial was requeued, from the search's event log."""
    with Store(run.store_url(), readonly=True) as st:
        sid = st.get_search(name).id
        return " | ".join(e.message for e in st.events(sid, 200)
                          if e.kind == "trial_requeued" and e.data.get("trial_id") == trial_id)


def test_script_search_stops_bad_children_early_through_report(tmp_path: Path) -> None:
    """10 children of a 3-epoch script; after 3 have finished, those below the 0.75 quantile
    at epoch 1 are told to stop by ``report`` and come back truncated."""
    run = make(tmp_path, "--epochs", "3", budget_trials=10, prune_epoch=1, prune_min_trials=3,
               prune_quantile=0.75)
    assert run_daemon(str(run.path)).finished
    trials, res = results(run)
    assert len(res) == 10 and all(t.state == "done" and t.attempts == 1 for t in trials)
    cut = [r for r in res.values() if r.metrics.get("truncated")]
    full = [r for r in res.values() if not r.metrics.get("truncated")]
    assert cut and full, [r.metrics for r in res.values()]
    for r in cut:  # stopped at epoch 1 below the threshold; the reward is what it finished with
        assert len(r.curve) == 1 and r.curve[0]["epoch"] == 1.0
        assert r.reward == r.curve[0]["val_metric"] < r.metrics["prune_below"]
        assert r.metrics["truncated_at_epoch"] == 1.0
    for r in full:  # the reported curve is stored; the reward is a function of the pattern
        assert [p["epoch"] for p in r.curve] == [1.0, 2.0, 3.0]
        assert r.reward == pytest.approx(r.metrics["quality"]) == r.curve[-1]["val_metric"]
    assert len({round(r.metrics["quality"], 6) for r in res.values()}) > 1
    log = (run.trial_dir(trials[0].id) / "attempt-1.log").read_text()
    assert "[script]" in log and f"trial {trials[0].id} seed {trials[0].seed} device cpu" in log


def test_killed_script_and_killed_child_are_retried(tmp_path: Path) -> None:
    """Attempt 1 of each trial hangs. One trial's script gets SIGKILL, the other's child
    process does (its script must die with it: no orphan). Both are infrastructure failures:
    requeued, and attempt 2 finishes."""
    pids = tmp_path / "pids"
    run = make(tmp_path, "--hang-first", str(pids), budget_trials=2, batch_size=2)
    killed: dict[int, tuple[str, int]] = {}  # trial id -> (what, script pid)

    def tick(daemon: Any) -> None:
        for child in list(daemon.children.values()):
            pid_file = pids / f"{child.trial_id}.pid"
            if child.attempt != 1 or child.trial_id in killed or not pid_file.is_file():
                continue
            script_pid = int(pid_file.read_text())
            what = "script" if not killed else "child"
            os.kill(script_pid if what == "script" else child.pid, signal.SIGKILL)
            killed[child.trial_id] = (what, script_pid)

    assert run_daemon(str(run.path), on_tick=tick).finished
    assert sorted(w for w, _ in killed.values()) == ["child", "script"]
    trials, res = results(run)
    for t in trials:
        assert t.state == "done" and t.attempts == 2, t
        assert not res[t.id].metrics.get("bad_pattern")
        assert not pid_alive(killed[t.id][1])  # no orphan left running
    errors = {killed[t.id][0]: requeued_because(run, t.id) for t in trials}
    assert "killed by signal SIGKILL" in errors["script"]
    assert "child killed by signal 9" in errors["child"]


def test_timed_out_script_is_killed_with_its_child_and_retried(tmp_path: Path) -> None:
    """--child-timeout kills the child's process group, the user's script with it."""
    pids = tmp_path / "pids"
    run = make(tmp_path, "--hang-first", str(pids), budget_trials=1, batch_size=1,
               child_timeout=4.0)
    assert run_daemon(str(run.path)).finished
    (trial,), res = results(run)
    assert trial.state == "done" and trial.attempts == 2 and not res[trial.id].metrics.get("bad_pattern")
    assert "timed out after 4 s" in requeued_because(run, trial.id)
    assert not pid_alive(int((pids / f"{trial.id}.pid").read_text()))


@pytest.mark.parametrize(("flag", "error"), [
    ("--crash", "uncaught RuntimeError: loss is nan"),
    ("--exit=3", "exited with status 3"),
    ("--no-finish", "without calling adsearch.trial.current().finish"),
])
def test_failing_script_is_a_bad_pattern_not_retried(tmp_path: Path, flag: str, error: str) -> None:
    run = make(tmp_path, flag, budget_trials=3, failure_reward=-1.0)
    assert run_daemon(str(run.path)).finished
    trials, res = results(run)
    assert len(trials) == 3
    for t in trials:
        assert t.state == "done" and t.attempts == 1  # a result, never retried
        assert res[t.id].reward == -1.0 and res[t.id].metrics["bad_pattern"] == 1.0
        assert error in (t.error or ""), t.error
    log = (run.trial_dir(trials[0].id) / "attempt-1.log").read_text()  # the log is kept
    if flag == "--crash":
        assert "Traceback" in log and "tiny_script.py" in log


def test_standalone_run_reads_the_pattern_from_argv_or_the_environment(tmp_path: Path) -> None:
    space = SearchSpace.from_name("conv-2")
    ps = PatternSet(space, tuple(space.pattern_cls.from_dict(  # type: ignore[attr-defined]
        {"size": 5, "stride": 2, "repeat": None, "rotate": 0, "shear_x": 0.0, "shear_y": 0.0,
         "share_c": True, "residual": False}) for _ in range(2)))
    pattern = save_patternset(ps, tmp_path / "best.json")
    expected = 1.0 - ps.patterns[0].drop_fraction(8, 8)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADSEARCH_")}
    env["PYTHONPATH"] = str(REPO)

    def run(*args: str, **extra: str) -> str:
        out = subprocess.run([sys.executable, str(TINY), "--epochs", "2", *args], cwd=tmp_path,
                             env={**env, **extra}, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    bare = run()
    assert "trial None" in bare and "standalone result: reward=1 quality=1" in bare
    for out in (run("--pattern", str(pattern)), run(f"--pattern={pattern}"),
                run(ADSEARCH_PATTERN=str(pattern))):
        assert f"quality {expected:.4f}" in out and "stopped early" not in out
        assert f"standalone result: reward={expected:.6g}" in out
    # the trial API itself never imports torch
    check = subprocess.run([sys.executable, "-c", "import sys, adsearch.trial; "
                            "assert 'torch' not in sys.modules"], env=env, timeout=60)
    assert check.returncode == 0


def test_resume_reuses_the_stored_command_and_workdir(tmp_path: Path) -> None:
    """Start in one directory, resume from another: every child runs the stored command in
    the stored --workdir."""
    runs, work, markers = tmp_path / "runs", tmp_path / "work", tmp_path / "markers"
    work.mkdir()
    env = cli_env(runs, PYTHONPATH=str(REPO))
    run_cli(runs, "start", "--script", command("--marker", str(markers)), "--workdir", str(work),
            "--space", "conv-2", "--name", "sm", "--controller", "random", "--workers", "1",
            "--budget-trials", "2", "--batch-size", "2", "--no-recheck", "--foreground", env=env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, "-m", "adsearch", "resume", "sm", "--budget-trials",
                           "4", "--foreground"], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    runs_done = sorted(markers.iterdir())
    assert len(runs_done) == 4 and {p.read_text() for p in runs_done} == {str(work)}
    with Store(RunDir(runs / "sm").store_url(), readonly=True) as st:
        search = st.get_search("sm")
        assert search.config["task"] == "script"
        assert search.config["task_config"]["workdir"] == str(work)
        assert st.counts(search.id)["done"] == 4


@pytest.mark.parametrize(("args", "message"), [
    (["--script", ""], "--script: the command is empty"),
    (["--script", "python 'train.py"], "--script: cannot parse"),
    (["--script", PY_TRAIN, "--workdir", "{tmp}/nope"], "--workdir: {tmp}/nope does not exist"),
    (["--script", PY_TRAIN, "--task", "synthetic"], "--script and --task synthetic exclude each other"),
    (["--script", "no-such-program-xyz --epochs 1"], "program 'no-such-program-xyz' is not on PATH"),
    (["--script", PY_TRAIN, "--workdir", "{tmp}"], "--script: train.py does not exist in {tmp}"),
    (["--script", PY_TRAIN, "--space", ""], "--script needs --space"),
    (["--workdir", "{tmp}"], "--workdir is for script mode"),
])
def test_bad_script_input_is_refused_with_nothing_written(tmp_path: Path, args: list[str],
                                                          message: str) -> None:
    runs = tmp_path / "runs"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--space" not in args:
        args += ["--space", "conv-2"]
    proc = run_cli(runs, "start", *args, "--name", "bad", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message.replace("{tmp}", str(tmp_path)) in lines[0]
    assert not runs.exists()


def test_raised_type_reads_the_last_traceback() -> None:
    from adsearch.tasks.script import raised_type

    text = ("warming up\nTraceback (most recent call last):\n  File \"t.py\", line 1, in <module>\n"
            "    import nope\nModuleNotFoundError: No module named 'nope'\n")
    assert raised_type(text) == "ModuleNotFoundError"
    assert raised_type(text.replace("ModuleNotFoundError: No module named 'nope'",
                                    "torch.cuda.OutOfMemoryError: CUDA out of memory")) == "OutOfMemoryError"
    assert raised_type("Traceback (most recent call last):\n  x\nKeyboardInterrupt\n") == "KeyboardInterrupt"
    assert raised_type("exit 2, no traceback\n") is None


def test_script_failing_before_it_reads_its_trial_names_the_exception(tmp_path: Path) -> None:
    """An ImportError before ``adsearch.trial`` is imported is still named (from stderr), so
    the search stops as failed on the bug instead of recording bad patterns."""
    cfg = SearchConfig(name="imp", task="script", controller="random", workers=1, budget_trials=1,
                       batch_size=1, task_config={
                           "command": f"{sys.executable} -c 'import adsearch_no_such_module'",
                           "workdir": str(tmp_path), "space": "conv-2"})
    run = create_search(cfg, RunDir(tmp_path / "imp"))
    run_daemon(str(run.path))
    (trial,), res = results(run, "imp")
    assert "uncaught ModuleNotFoundError: No module named 'adsearch_no_such_module'" in (trial.error or "")
    with Store(run.store_url(), readonly=True) as st:  # a bug, not a result (classify: "error")
        assert st.get_search("imp").state == "failed" and not res
    log = (run.trial_dir(trial.id) / "attempt-1.log").read_text()
    assert "Traceback (most recent call last)" in log  # the user's stderr reached the log


def test_spec_file_carries_the_trial(tmp_path: Path) -> None:
    """What a script sees through ``$ADSEARCH_TRIAL``: the pattern set, seed, device, budget
    and trial id of its own trial (checked by a script that dumps them)."""
    dump = tmp_path / "dump.py"
    dump.write_text("import json, sys, adsearch.trial\n"
                    "t = adsearch.trial.current()\n"
                    "json.dump({'space': t.patterns.space.name, 'n': len(t.patterns.patterns),\n"
                    "           'seed': t.seed, 'device': t.device, 'id': t.trial_id,\n"
                    "           'epochs': t.budget.epochs, 'threads': t.threads},\n"
                    "          open(f'seen-{t.trial_id}.json', 'w'))\n"
                    "t.finish(0.5)\n")
    cfg = SearchConfig(name="d", task="script", controller="random", workers=1, budget_trials=2,
                       batch_size=2, child_epochs=2.0, child_seed=11, recheck=False,
                       task_config={"command": f"{sys.executable} dump.py",
                                    "workdir": str(tmp_path), "space": "conv-3"})
    run = create_search(cfg, RunDir(tmp_path / "d"))
    assert run_daemon(str(run.path)).finished
    trials, res = results(run, "d")
    for t in trials:
        seen = json.loads((tmp_path / f"seen-{t.id}.json").read_text())
        assert seen == {"space": "conv-3", "n": 3, "seed": 11, "device": "cpu", "id": t.id,
                        "epochs": 2.0, "threads": seen["threads"]} and seen["threads"] >= 1
        assert res[t.id].reward == 0.5


@pytest.fixture
def pg_url(pg_base_url: str) -> Iterator[str]:
    yield from _fresh_database(pg_base_url)


def test_adsearch_worker_runs_the_stored_command(pg_url: str, tmp_path: Path) -> None:
    """A PostgreSQL search: the daemon and an ``adsearch worker`` started in another
    directory both run children, and every one runs the stored command in the stored
    workdir."""
    work, markers, elsewhere = tmp_path / "work", tmp_path / "markers", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    cfg = SearchConfig(name="w", task="script", controller="random", workers=1, budget_trials=6,
                       batch_size=2, recheck=False, task_config={
                           "command": command("--marker", str(markers), "--sleep", "0.7"),
                           "workdir": str(work), "space": "conv-2"})
    run = create_search(cfg, RunDir(tmp_path / "run"), store_url=pg_url)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    worker = subprocess.Popen([sys.executable, "-m", "adsearch", "worker", "--store", pg_url,
                               "--search", "w", "--workers", "1", "-v", "--work-dir",
                               str(tmp_path / "wdir")], cwd=elsewhere, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    daemon_pid = spawn_detached(run)
    try:
        _, err = worker.communicate(timeout=180)
        assert worker.returncode == 0, err[-3000:]
        wait_for(lambda: not pid_alive(daemon_pid), 60, "the daemon to exit")
    finally:
        if worker.poll() is None:
            worker.kill()
        if pid_alive(daemon_pid):
            os.kill(daemon_pid, signal.SIGKILL)
    claimed = {int(t) for t in re.findall(r"claimed trial (\d+)", err)}
    with Store(pg_url, readonly=True) as st:
        sid = st.get_search("w").id
        assert st.get_search("w").state == "finished"
        assert st.counts(sid)["done"] == 6
        ids = {t.id for t in st.trials(sid)}
    assert claimed and claimed < ids  # both the worker and the daemon ran children
    runs_done = sorted(markers.iterdir())
    assert len(runs_done) == 6 and {p.read_text() for p in runs_done} == {str(work)}
    logs = list((tmp_path / "wdir").rglob("attempt-1.log"))
    assert logs and all("[script]" in p.read_text() for p in logs)


def test_script_search_on_the_ray_executor(tmp_path: Path) -> None:
    """A local Ray: each child is a Ray task that runs the stored command in the workdir."""
    ray = pytest.importorskip("ray")
    work, markers = tmp_path / "work", tmp_path / "markers"
    work.mkdir()
    cfg = SearchConfig(name="r", task="script", controller="random", executor="ray", workers=2,
                       budget_trials=4, batch_size=2, recheck=False, task_config={
                           "command": command("--marker", str(markers)), "workdir": str(work),
                           "space": "conv-2"})
    run = create_search(cfg, RunDir(tmp_path / "r"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        assert run_daemon(str(run.path)).finished
    finally:
        ray.shutdown()
    trials, res = results(run, "r")
    assert [t.state for t in trials] == ["done"] * 4 and {t.attempts for t in trials} == {1}
    assert all(r.reward == pytest.approx(r.metrics["quality"]) for r in res.values())
    docs = [json.loads((run.trial_dir(t.id) / "result.json").read_text()) for t in trials]
    assert all(d["executor"]["pid"] != os.getpid() for d in docs)  # ran in Ray workers
    runs_done = sorted(markers.iterdir())
    assert len(runs_done) == 4 and {p.read_text() for p in runs_done} == {str(work)}



def test_example_a_resnet18_script_is_searched(tmp_path: Path, data_slices: Path) -> None:
    """examples/a_script_resnet18.py (torchvision ResNet-18, CIFAR stem, adsearch.sites.attach)
    searched with --script at a tiny budget on a real CIFAR-10 JPEG slice, through the CLI."""
    runs = tmp_path / "runs"
    example = REPO / "examples" / "a_script_resnet18.py"
    cmd = shlex.join([sys.executable, str(example), "--data", str(data_slices / "cifar10-jpg"),
                      "--epochs", "1", "--per-class", "8", "--batch", "16"])
    run_cli(runs, "start", "--script", cmd, "--space", "conv-4", "--name", "ex",
            "--controller", "random", "--workers", "2", "--budget-trials", "2",
            "--batch-size", "2", "--no-recheck", "--foreground",
            env=cli_env(runs, PYTHONPATH=str(REPO)),
            timeout=600)
    run = RunDir(runs / "ex")
    trials, res = results(run, "ex")
    assert [t.state for t in trials] == ["done", "done"], [t.error for t in trials]
    for t in trials:
        r = res[t.id]
        assert not r.metrics.get("bad_pattern") and r.metrics["sites"] == 4.0
        assert 0.0 <= r.reward <= 1.0 and r.reward == r.metrics["val_acc"]
        assert [p["epoch"] for p in r.curve] == [1.0]
        assert "epoch 1: train loss" in (run.trial_dir(t.id) / "attempt-1.log").read_text()
