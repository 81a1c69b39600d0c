"""`start` says what it does while it works and does not pay for what the daemon needs only
later; a daemon killed during start-up is reported as dead, with its log, not as "did not
report ready within 300 s" (issue 12 §5). Real subprocesses: `adsearch resume` spawns the daemon, the
test kills it with SIGKILL while it starts (a sitecustomize on PYTHONPATH holds every new
Python process for a few seconds, so the kill lands inside start-up every time)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_daemon_support import cli_env
from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.daemon.config import SearchConfig
from adsearch.daemon.launch import create_search
from adsearch.daemon.rundir import RunDir


def _daemon_pids(run_path: Path) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"adsearch.daemon" in argv and str(run_path).encode() in argv:
            out.append(int(d.name))
    return out


def test_resume_says_the_daemon_died_during_start_up(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cfg = SearchConfig(name="dies", task="synthetic", controller="random", workers=1, budget_trials=4)
    run = create_search(cfg, RunDir(runs / "dies"))
    hold = tmp_path / "hold"
    hold.mkdir()
    (hold / "sitecustomize.py").write_text("import time\ntime.sleep(3)\n")
    env = cli_env(runs, PYTHONPATH=os.pathsep.join([str(hold), os.environ.get("PYTHONPATH", "")]))
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "adsearch", "resume", "dies"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = []
    deadline = time.time() + 60
    while not killed and time.time() < deadline and proc.poll() is None:
        for pid in _daemon_pids(run.path):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        time.sleep(0.05)
    out, err = proc.communicate(timeout=120)
    assert killed, "never saw the daemon start"
    assert proc.returncode == 1, out + err
    assert f"error: the daemon (pid {killed[0]}) was killed by signal 9 (SIGKILL) during start-up" in err, err
    assert "did not report ready" not in err and "Traceback" not in err
    assert str(run.log_file) in err
    assert time.time() - started < 60  # told at once, not after the 300 s ready timeout


def test_start_prints_each_step_as_it_begins(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    res = CliRunner().invoke(app, ["start", "--task", "synthetic", "--name", "talk", "--workers", "1",
                                   "--budget-trials", "2", "--batch-size", "2"],
                             env={"ADSEARCH_RUNS": str(runs)})
    try:
        assert res.exit_code == 0, res.output
        out = res.output
        steps = ["checking task synthetic: its config, space and data", "writing the search to the store",
                 "created search talk", "starting the daemon and waiting until it is ready",
                 "daemon pid"]
        at = [out.find(s) for s in steps]
        assert -1 not in at and at == sorted(at), out
        assert "s checking task" in out  # each step carries the seconds since start began
    finally:
        subprocess.run([sys.executable, "-m", "adsearch", "stop", "talk", "--now"], env=cli_env(runs),
                       capture_output=True, timeout=120)


def test_a_new_transformer_controller_defers_its_optimizer() -> None:
    """Building torch's Adam imports torch._dynamo (seconds); the daemon reports ready before
    its first update, so the controller makes the optimizer on first use."""
    code = ("import sys\n"
            "from adsearch.controller import make_controller\n"
            "from adsearch.patterns import SearchSpace\n"
            "c = make_controller('transformer', SearchSpace.from_name('conv-3'), seed=0)\n"
            "s = c.sample(4)\n"
            "assert 'torch._dynamo' not in sys.modules, 'dynamo imported before the first update'\n"
            "c.update([(x, float(i)) for i, x in enumerate(s)])\n"
            "assert c.version == 1 and c.state_dict()['optimizer']['state']\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
