"""Task plug-ins: ``--task package.module:ClassName`` and entry points of group
``adsearch.tasks``, loaded from a module outside the package (examples/b_plugin_task).

Real subprocesses run a real plug-in search (daemon, children, resume), a real
``adsearch worker`` runs plug-in trials from PostgreSQL, a real dist-info on PYTHONPATH
provides an entry point, and each bad plug-in is refused before anything is written.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_backends import *  # noqa: F403  (fixtures: pg_base_url)
from store_backends import _fresh_database
from test_daemon_support import REPO, dump_db
from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.daemon.config import SearchConfig
from adsearch.daemon.launch import create_search
from adsearch.daemon.rundir import RunDir
from adsearch.errors import ConfigError
from adsearch.patterns.canonical import pattern_hash
from adsearch.queue.dbqueue import DbQueue
from adsearch.store import NewTrial, Store
from adsearch.tasks import entry_point_names, get_task

EXAMPLE = REPO / "examples" / "b_plugin_task"
TASK = "mytask:MyTask"
#: a child of a few seconds: 30 images per class, 2 epochs of 4 steps
SMALL = json.dumps({"train_per_class": 30, "epochs": 2})
runner = CliRunner()


def env_with(*paths: Path, runs: Path | None = None) -> dict[str, str]:
    """The environment with PYTHONPATH = the checkout + ``paths`` (and no GPU)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *map(str, paths)])
    env.pop("CUDA_VISIBLE_DEVICES", None)
    if runs is not None:
        env["ADSEARCH_RUNS"] = str(runs)
    return env


def adsearch(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adsearch", *args], env=env, cwd=REPO.parent,
                          capture_output=True, text=True, timeout=timeout)


def finished_rewards(url: str, name: str) -> list[float]:
    with Store(url, readonly=True) as st:
        sid = st.get_search(name).id
        return [r.reward for r in st.results(sid) if r.reward is not None]


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example folder importable in this process (as PYTHONPATH does for subprocesses)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))


# ----------------------------------------------------------------------------- a real search
def test_plugin_search_runs_and_resumes_in_subprocesses(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = env_with(EXAMPLE)
    res = adsearch("start", "--task", TASK, "--name", "plug", "--run-dir", str(run),
                   "--budget-trials", "3", "--workers", "1", "--batch-size", "2",
                   "--task-config", SMALL, "--prune-at-epoch", "1", "--no-recheck",
                   "--foreground", env=env)
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-2000:]
    url = RunDir(run).store_url()
    with Store(url, readonly=True) as st:
        search = st.get_search("plug")
        assert search.state == "finished"
        assert search.config["task"] == TASK  # the store records the import path
        assert search.config["space"] == "conv-2"
        assert search.config["task_config"]["train_per_class"] == 30
        assert st.counts(search.id)["done"] == 3
        assert st.latest_checkpoint(search.id) is not None  # the controller learned from them
        results = st.results(search.id)
    assert len(results) == 3
    for r in results:  # real training: one curve point per epoch, accuracy in [0, 1]
        assert r.reward is not None and 0.0 <= r.reward <= 1.0
        assert r.metrics["val_acc"] == r.reward and r.curve[0]["epoch"] == 1.0
    logs = sorted((run / "trials").rglob("*.log"))
    assert logs and f"task {TASK}" in logs[0].read_text()

    res = adsearch("resume", "--run-dir", str(run), "--budget-trials", "4", "--foreground",
                   env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(finished_rewards(url, "plug")) == 4


def test_resume_without_the_module_changes_nothing(tmp_path: Path, on_path: None) -> None:
    run = RunDir(tmp_path / "run")
    create_search(SearchConfig(name="r", task=TASK, workers=1, budget_trials=2,
                               task_config=json.loads(SMALL)), run)
    before = dump_db(run.path / "adsearch.db")
    res = adsearch("resume", "--run-dir", str(run.path), "--foreground", env=env_with())
    assert res.returncode == 1, res.stderr
    assert "cannot import module 'mytask'" in res.stderr and "Traceback" not in res.stderr
    assert dump_db(run.path / "adsearch.db") == before
    assert run.daemon_pid() is None


# ----------------------------------------------------------------------------- adsearch worker
@pytest.fixture
def pg_url(pg_base_url: str) -> Iterator[str]:
    yield from _fresh_database(pg_base_url)


def _queue_plugin_trials(url: str, tmp_path: Path, n: int) -> None:
    """A running plug-in search in PostgreSQL with ``n`` queued trials (no daemon)."""
    cfg = SearchConfig(name="pw", task=TASK, task_config=json.loads(SMALL), workers=1)
    create_search(cfg, RunDir(tmp_path / "run"), store_url=url)
    space = get_task(TASK).space(get_task(TASK).get_default_config())
    rng = random.Random(0)
    with Store(url) as st:
        sid = st.get_search("pw").id
        st.set_search_state(sid, "running")
        pats = [space.sample(rng) for _ in range(n)]
        items = [NewTrial(pattern=[p.to_dict() for p in ps],
                          pattern_hash=pattern_hash([p.to_dict() for p in ps]),
                          tokens=space.encode(ps), controller_version=0, logp=-1.0, seed=i)
                 for i, ps in enumerate(pats)]
        DbQueue(st, sid).push([t.id for t in st.add_trials(sid, items)])


def test_adsearch_worker_runs_plugin_trials(pg_url: str, tmp_path: Path, on_path: None) -> None:
    _queue_plugin_trials(pg_url, tmp_path, 2)
    worker = [sys.executable, "-m", "adsearch", "worker", "--store", pg_url, "--search", "pw",
              "--workers", "1", "--burst", "-v"]
    # a worker host without the module refuses to serve, with the fix, and claims nothing
    bare = subprocess.run([*worker, "--work-dir", str(tmp_path / "w0")], env=env_with(),
                          capture_output=True, text=True, timeout=120)
    assert bare.returncode == 1 and "cannot import module 'mytask'" in bare.stderr, bare.stderr
    with Store(pg_url, readonly=True) as st:
        assert st.counts(st.get_search("pw").id)["queued"] == 2
    ok = subprocess.run([*worker, "--work-dir", str(tmp_path / "w1")], env=env_with(EXAMPLE),
                        capture_output=True, text=True, timeout=240)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "claimed trial 1" in ok.stderr and "claimed trial 2" in ok.stderr
    rewards = finished_rewards(pg_url, "pw")
    assert len(rewards) == 2 and all(0.0 <= r <= 1.0 for r in rewards)


def test_ray_workers_import_the_plugin(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    run = tmp_path / "run"
    res = adsearch("start", "--task", TASK, "--run-dir", str(run), "--name", "ray",
                   "--executor", "ray", "--workers", "1", "--budget-trials", "2",
                   "--batch-size", "2", "--controller", "random", "--task-config", SMALL,
                   "--child-epochs", "1", "--no-recheck", "--foreground", env=env_with(EXAMPLE),
                   timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(finished_rewards(RunDir(run).store_url(), "ray")) == 2
    doc = json.loads((run / "trials" / "1" / "result.json").read_text())
    assert doc["status"] == "ok" and doc["executor"]["node"]  # ran as a Ray task


# ----------------------------------------------------------------------------- entry points
def _dist_info(root: Path, entry: str = "myconv = mytask:MyTask") -> Path:
    """A real installed distribution's metadata: ``root/mytask_plugin-1.0.dist-info``."""
    info = root / "mytask_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mytask-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[adsearch.tasks]\n{entry}\n")
    return root


def test_entry_point_resolves_lists_and_searches(tmp_path: Path, on_path: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    site = _dist_info(tmp_path / "site")
    assert "myconv" not in entry_point_names()
    monkeypatch.syspath_prepend(str(site))
    assert "myconv" in entry_point_names()
    assert type(get_task("myconv")).__name__ == "MyTask"
    with pytest.raises(ConfigError, match=r"unknown task 'nope'.*myconv.*package\.module:ClassName"):
        get_task("nope")
    # the name is what the store keeps; daemon and children resolve it through the metadata
    run = tmp_path / "run"
    res = adsearch("start", "--task", "myconv", "--run-dir", str(run), "--name", "ep",
                   "--budget-trials", "2", "--workers", "1", "--batch-size", "2",
                   "--controller", "random", "--task-config", SMALL, "--child-epochs", "1",
                   "--no-recheck", "--foreground", env=env_with(EXAMPLE, site))
    assert res.returncode == 0, res.stderr[-3000:]
    with Store(RunDir(run).store_url(), readonly=True) as st:
        assert st.get_search("ep").config["task"] == "myconv"
    assert len(finished_rewards(RunDir(run).store_url(), "ep")) == 2


def test_broken_entry_point_names_its_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(_dist_info(tmp_path / "site", "gone = notthere.tasks:T")))
    with pytest.raises(ConfigError) as exc:
        get_task("gone")
    msg = str(exc.value)
    assert "entry point 'gone'" in msg and "package mytask-plugin" in msg
    assert "cannot import module 'notthere.tasks'" in msg


# ----------------------------------------------------------------------------- train
def test_train_accepts_a_plugin(tmp_path: Path, on_path: None) -> None:
    from adsearch.patterns import PatternSet, SearchSpace, save_patternset

    def pattern_file(path: Path, space: str) -> Path:
        sp = SearchSpace.from_name(space)
        save_patternset(PatternSet(space=sp, patterns=tuple(sp.sample(random.Random(1)))), path)
        return path

    out = tmp_path / "t.json"
    res = runner.invoke(app, ["train", "--task", TASK, "--pattern",
                              str(pattern_file(tmp_path / "p.json", "conv-2")),
                              "--child-steps", "3", "--task-config", SMALL, "-o", str(out),
                              "--threads", "1", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["task"] == TASK and doc["config"]["train_per_class"] == 30
    assert doc["runs"][0]["metrics"]["steps"] == 3.0
    assert math.isfinite(doc["runs"][0]["reward"])
    # a pattern file searched for another network is refused before training
    res = runner.invoke(app, ["train", "--task", TASK, "--pattern",
                              str(pattern_file(tmp_path / "w.json", "conv-3")),
                              "--child-steps", "1"])
    assert res.exit_code == 1 and "conv-2" in res.output and "conv-3" in res.output


# ----------------------------------------------------------------------------- bad input
BAD_MODULES = {
    "badimport": "import not_installed_xyz  # the user's own import error\n",
    "norun": textwrap.dedent("""
        from adsearch.patterns import SearchSpace

        class NoRun:
            name = "norun"
            def get_default_config(self): return None
            def config_from_dict(self, data): return None
            def space(self, config): return SearchSpace.from_name("conv-2")
        """),
    "rawcfg": textwrap.dedent("""
        from dataclasses import asdict, dataclass
        from mytask import MyTask

        @dataclass(frozen=True)
        class Cfg:
            width: int = 4
            def to_dict(self): return asdict(self)

        class RawCfg(MyTask):
            def config_from_dict(self, data): return Cfg(**data)  # unknown keys: TypeError
        """),
    "nodict": textwrap.dedent("""
        from mytask import MyTask

        class NoDict(MyTask):
            def config_from_dict(self, data): return object()
        """),
    "strspace": textwrap.dedent("""
        from mytask import MyTask

        class StrSpace(MyTask):
            def space(self, config): return "conv-2"
        """),
    "noprune": textwrap.dedent("""
        from mytask import MyTask

        class NoPrune(MyTask):
            supports_pruning = False
        """),
}


@pytest.mark.parametrize("args,needles", [
    (["--task", "nosuchmod:Task"], ["cannot import module 'nosuchmod'", "PYTHONPATH"]),
    (["--task", "badimport:Task"], ["importing module 'badimport' failed",
                                    "No module named 'not_installed_xyz'", "badimport.py:1"]),
    (["--task", "mytask:Nope"], ["has no 'Nope'", "classes it defines:", "MyTask"]),
    (["--task", "mytask:EXAMPLE_INPUT"], ["not a class"]),
    (["--task", "norun:NoRun"], ["class NoRun is missing run_child", "docs/tasks.md"]),
    (["--task", TASK, "--task-config", '{"colour": 1}'], ["mytask config: unknown key(s) colour"]),
    (["--task", "rawcfg:RawCfg", "--task-config", '{"colour": 1}'],
     ["its config does not parse (TypeError", "--task-config"]),
    (["--task", "nodict:NoDict"], ["without to_dict()"]),
    (["--task", "strspace:StrSpace"], ["not an adsearch.patterns.SearchSpace"]),
    (["--task", TASK, "--space", "conv-3"], ["has dropout sites for space conv-2", "--task-config"]),
    (["--task", "noprune:NoPrune", "--prune-at-epoch", "1"],
     ["does not support early stopping", "supports_pruning = True"]),
    (["--task", "noprune:NoPrune", "--scheduler", "asha", "--min-epochs", "1", "--max-epochs", "3"],
     ["--scheduler asha: task noprune:NoPrune does not support early stopping", "supports_pruning = True"]),
])
def test_bad_plugin_is_refused_and_nothing_is_written(
        tmp_path: Path, on_path: None, monkeypatch: pytest.MonkeyPatch, args: list[str],
        needles: list[str]) -> None:
    mods = tmp_path / "mods"
    mods.mkdir()
    for mod, text in BAD_MODULES.items():
        (mods / f"{mod}.py").write_text(text)
    monkeypatch.syspath_prepend(str(mods))
    runs, run = tmp_path / "runs", tmp_path / "run"
    res = runner.invoke(app, ["start", "--name", "bad", "--run-dir", str(run), "--workers", "1",
                              *args], env={"ADSEARCH_RUNS": str(runs)})
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    err = res.stderr
    assert err.startswith("error: ") and err.count("error:") == 1 and "Traceback" not in err
    for n in needles:
        assert n in " ".join(err.split()), err  # the console may wrap long lines
    assert not run.exists() and not runs.exists()


def test_plugin_import_error_in_a_subprocess_is_one_line(tmp_path: Path) -> None:
    res = adsearch("start", "--task", "nosuchmod:X", "--run-dir", str(tmp_path / "run"),
                   env=env_with(runs=tmp_path / "runs"))
    assert res.returncode == 1 and "\u274c" not in res.stdout + res.stderr  # ":X:" is no emoji
    assert res.stderr.startswith("error: task nosuchmod:X: cannot import module")  # no emoji
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


def test_registry_import_stays_cheap() -> None:
    code = ("import sys, adsearch.tasks.registry as r; r.get_task('synthetic'); "
            "print(sorted(m for m in ('torch', 'importlib.metadata') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=env_with(), capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"


def test_the_docs_example_plugin_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The inline example of docs/tasks.md, as written there, passes start's checks and trains."""
    from adsearch.daemon.launch import check_task
    from adsearch.tasks import Budget

    doc = (REPO / "docs" / "tasks.md").read_text()
    code = doc.split("The\nsmallest useful one:\n\n```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "tiny.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = check_task(SearchConfig(name="tiny", task="tiny:TinyTask", workers=1))
    assert cfg.space == "conv-1" and cfg.task_config == {"steps": 30}
    task = get_task("tiny:TinyTask")
    space = task.space(None)
    res = task.run_child(task.config_from_dict(cfg.task_config), space.sample(random.Random(0)),
                         Budget(steps=2), "cpu", 0)
    assert 0.0 <= res.reward <= 1.0 and res.metrics["val_acc"] == res.reward


def test_each_task_declares_its_data_keys(on_path: None) -> None:
    """--data/--test-data/--download map onto each task's own config keys, declared on the
    task class (adsearch.tasks.registry.data_overrides); a plug-in that declares none gets
    the defaults ("data", "test_data", no download), and an option a task does not take is
    refused by name. train and verify both ask the registry."""
    from adsearch.tasks.registry import data_overrides

    def keys(name: str, **kw: object) -> dict[str, object]:
        return data_overrides(get_task(name), name, **kw)  # type: ignore[arg-type]

    assert keys("cifar10", data="d", test_data="t", download=True) == {
        "data": "d", "test_data": "t", "download": True}
    assert keys("wikitext2", test_data="t.txt") == {"test_data": "t.txt"}
    assert keys("translation", test_data="p/test") == {"test_split": "p/test"}
    assert not hasattr(type(get_task(TASK)), "test_data_key")  # the example declares none
    assert keys(TASK, data="d", test_data="t") == {"data": "d", "test_data": "t"}
    assert keys("cifar10") == {}
    for name in ("synthetic", "script"):
        with pytest.raises(ConfigError, match=f"--test-data is not supported by task {name}"):
            keys(name, test_data="t")
    for name in ("wikitext2", TASK):
        with pytest.raises(ConfigError, match="--download only applies"):
            keys(name, download=True)
