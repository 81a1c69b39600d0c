"""The Ray executor on a real local Ray cluster (GPU resources declared, none present) with a
real PostgreSQL store: a short synthetic search end to end, one GPU per child as Ray
assigns it, bad patterns as results, and a Ray worker killed mid-child retried by the daemon,
with the attempt counted in the store (Ray's own retries are off)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from store_backends import *  # noqa: F403  (fixtures: pg_base_url)
from store_backends import _fresh_database
from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.daemon.config import SearchConfig
from adsearch.daemon.launch import create_search
from adsearch.daemon.rundir import RunDir
from adsearch.daemon.runner import run_daemon
from adsearch.store import Store


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def pg_url(pg_base_url: str) -> Iterator[str]:
    yield from _fresh_database(pg_base_url)


def _docs(run: RunDir, ids: list[int]) -> dict[int, dict]:  # type: ignore[type-arg]
    return {t: json.loads((run.trial_dir(t) / "result.json").read_text()) for t in ids}


def test_search_on_ray_with_postgresql(ray_cluster: None, pg_url: str, tmp_path: Path) -> None:
    cfg = SearchConfig(name="on-ray", task="synthetic", controller="random", executor="ray",
                       workers=2, ray_gpus=1.0, budget_trials=8, batch_size=4,
                       task_config={"sleep": 0.2, "bad_fraction": 0.3})
    run = create_search(cfg, RunDir(tmp_path / "run"), store_url=pg_url)
    daemon = run_daemon(str(run.path))
    assert daemon.finished
    with Store(pg_url, readonly=True) as st:
        sid = st.get_search("on-ray").id
        trials = st.trials(sid)
        searched = [t for t in trials if t.purpose == "search"]
        assert st.get_search("on-ray").state == "finished" and len(searched) == 8
        assert {t.state for t in trials} == {"done"} and {t.attempts for t in trials} == {1}
        assert any(t.purpose == "recheck" for t in trials)  # Ray ran the re-check children too
        bad = [t for t in trials if t.error]  # raised in the child: a result, not retried
        assert bad and all(r.metrics.get("bad_pattern") == 1.0 and r.reward == 0.0
                           for r in st.results(sid, [t.id for t in bad]))
        assert st.consumed_trial_ids(sid) == {t.id for t in searched}  # re-checks: no sample
    docs = _docs(run, [t.id for t in trials])
    devices = [d["executor"]["cuda_visible_devices"] for d in docs.values()]
    assert set(devices) == {"0", "1"}  # each child saw exactly the one GPU Ray gave it
    assert all(d["executor"]["gpu_ids"] == [d["executor"]["cuda_visible_devices"]]
               for d in docs.values())


def _task_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "^ray::adsearch-trial-"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_ray_worker_killed_mid_child_is_retried(ray_cluster: None, tmp_path: Path) -> None:
    cfg = SearchConfig(name="kill-ray", task="synthetic", controller="random", executor="ray",
                       workers=1, ray_gpus=0.5, budget_trials=2, batch_size=2,
                       task_config={"sleep": 2.0}, recheck=False)
    run = create_search(cfg, RunDir(tmp_path / "run"))
    killed: list[int] = []

    def kill_first_child() -> None:
        deadline = time.time() + 60
        while not killed and time.time() < deadline:
            pids = _task_pids()
            if pids:
                time.sleep(0.5)  # mid-child
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_child)
    killer.start()
    daemon = run_daemon(str(run.path))
    killer.join()
    assert killed and daemon.finished
    with Store(run.store_url(), readonly=True) as st:
        sid = st.get_search("kill-ray").id
        trials = st.trials(sid)
        assert [t.state for t in trials] == ["done", "done"] and st.counts(sid)["failed"] == 0
        # one attempt budget: the killed run counts as an attempt in the store (Ray's own
        # retries used to rerun it silently, up to max_attempts times per adsearch attempt)
        assert sorted(t.attempts for t in trials) == [1, 2], [t.attempts for t in trials]
        retried = next(t for t in trials if t.attempts == 2)
        assert any(e.kind == "trial_requeued" and e.data.get("trial_id") == retried.id
                   for e in st.events(sid, 200))
    pids = [d["executor"]["pid"] for d in _docs(run, [t.id for t in trials]).values()]
    assert killed[0] not in pids  # the killed run's trial finished on its second attempt


def test_start_refuses_bad_executor_options(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["start", "--task", "synthetic", "--run-dir", str(tmp_path / "r"), "--name", "x"]
    for extra, message in (
        (["--executor", "spark", "--workers", "1"], "--executor: unknown executor 'spark'"),
        (["--executor", "ray", "--gpus", "0"], "--gpus names this host's GPUs"),
        (["--executor", "ray"], "--executor ray needs --workers N"),
        (["--executor", "ray", "--workers", "1", "--ray-gpus", "-1"], "--ray-gpus: invalid value"),
        (["--workers", "1", "--ray-gpus", "1"], "need --executor ray"),
    ):
        res = runner.invoke(app, base + extra)
        assert res.exit_code == 1 and message in res.output, (extra, res.output)
    assert not (tmp_path / "r").exists()  # nothing written
