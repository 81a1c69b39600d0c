"""The first five minutes (issue 23 §3), with real processes: hints name a command that works
in the user's shell (adsearch is not on PATH after `make run`), a foreground search whose
output is not a terminal prints progress lines and its final table once, and
``--max-ahead`` makes later children come from an updated controller."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from test_daemon_support import cli_env, wait_for

from adsearch.daemon.rundir import RunDir
from adsearch.store import Store

VENV_BIN = Path(sys.executable).parent


def _env(runs: Path, with_venv_on_path: bool) -> dict[str, str]:
    """An environment whose PATH lacks (or starts with) this interpreter's bin directory, as
    a fresh shell after `make run` (or one that activated the venv)."""
    env = cli_env(runs)
    parts = [p for p in env.get("PATH", "").split(os.pathsep)
             if p and Path(p).resolve() != VENV_BIN.resolve()]
    env["PATH"] = os.pathsep.join(([str(VENV_BIN)] if with_venv_on_path else []) + parts)
    return env


def _start(runs: Path, env: dict[str, str], name: str, *extra: str,
           cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "adsearch"), "start", "--task", "synthetic", "--name", name,
         "--controller", "random", "--workers", "1", "--budget-trials", "2", "--batch-size",
         "2", "--no-recheck", *extra], cwd=cwd or runs.parent, env=env, capture_output=True,
        text=True, timeout=180)


def test_hints_name_a_command_that_works_in_this_shell(tmp_path: Path) -> None:
    """Without the venv on PATH, start's hints give this installation's adsearch by path
    and say how to activate the venv; with it on PATH, plain `adsearch`. The hinted command
    runs as printed."""
    runs = tmp_path / "runs"
    runs.mkdir()
    env = _env(runs, with_venv_on_path=False)
    if subprocess.run(["sh", "-c", "command -v adsearch"], env=env,
                      capture_output=True).returncode == 0:
        import pytest

        pytest.skip("another adsearch is on PATH outside this venv")
    res = _start(runs, env, "a")
    assert res.returncode == 0, res.stderr
    out = " ".join(res.stdout.split())
    full = str(VENV_BIN / "adsearch")
    assert f"watch: {full} status a --watch" in out, out
    assert f"stop: {full} stop a" in out
    assert f"run `source {VENV_BIN / 'activate'}` to type it as plain `adsearch`" in out
    wait_for(lambda: _state(RunDir(runs / "a")) == "finished", 120, "the search to finish")
    hinted = subprocess.run(f"{full} status a", shell=True, env=env, capture_output=True,
                            text=True, cwd=runs.parent)
    assert hinted.returncode == 0 and "finished" in hinted.stdout, hinted.stderr
    # an error's suggested command too (messages are written with plain `adsearch`)
    refused = subprocess.run([full, "resume", "a"], env=env, capture_output=True, text=True,
                             cwd=runs.parent)
    err = " ".join(refused.stderr.split())
    assert refused.returncode == 1 and f"`{full} resume a --budget-minutes M`" in err, err
    # below the working directory, the hint is relative, as a user types it
    res = _start(runs, env, "b", cwd=VENV_BIN.parent.parent)
    assert res.returncode == 0, res.stderr
    rel = os.path.relpath(VENV_BIN / "adsearch", VENV_BIN.parent.parent)
    assert f"watch: {rel} status b --watch" in " ".join(res.stdout.split()), res.stdout
    wait_for(lambda: _state(RunDir(runs / "b")) == "finished", 120, "the search to finish")
    res = _start(runs, _env(runs, with_venv_on_path=True), "c")
    out = " ".join(res.stdout.split())
    assert res.returncode == 0 and "watch: adsearch status c --watch" in out, out
    assert "not on this shell's PATH" not in out
    wait_for(lambda: _state(RunDir(runs / "c")) == "finished", 120, "the search to finish")


def _state(run: RunDir) -> str:
    with Store(run.store_url(), readonly=True) as st:
        return str(st.get_search(str((run.identity() or {})["name"])).state)


def test_a_piped_foreground_search_prints_progress_lines(tmp_path: Path) -> None:
    """Output that is not a terminal used to get nothing for minutes, then the table twice
    (the live display's last frame, then status). Now: a line per trial as it ends, one per
    controller update, the final table once, and the closing line."""
    runs = tmp_path / "runs"
    runs.mkdir()
    proc = _start(runs, _env(runs, with_venv_on_path=False), "p", "--foreground",
                  "--budget-trials", "6", "--batch-size", "3", "--controller", "transformer",
                  "--task-config", '{"sleep": 0.3}')
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    ends = [ln for ln in lines if "(drawn by controller v" in ln and ": reward " in ln]
    assert len(ends) == 6, proc.stdout
    assert all(ln.startswith("[") and "s] trial " in ln for ln in ends)
    updates = [ln for ln in lines if "controller v" in ln and "learned from trials" in ln]
    assert [u.split("controller ")[1].split(":")[0] for u in updates] == ["v1", "v2"], updates
    assert "trials drawn from now on come from v1" in updates[0]
    assert sum("top " in ln and "trial" not in ln for ln in lines) == 1, proc.stdout
    assert lines.index(updates[-1]) < next(i for i, ln in enumerate(lines) if ln.startswith("top "))
    assert f"`{VENV_BIN / 'adsearch'} status p` for the summary" in proc.stdout


def test_max_ahead_makes_later_children_come_from_an_updated_controller(tmp_path: Path) -> None:
    """With batch 3 and 2 slots the default bound (batch + 2 x slots + lookahead = 9) lets the
    untrained controller draw 9 of 12 children; --max-ahead 5 lets it draw 5, and each
    update shapes the next draws (what `make run` relies on)."""
    runs = tmp_path / "runs"
    runs.mkdir()
    versions = {}
    for name, extra in (("default", []), ("ahead", ["--max-ahead", "5"])):
        res = _start(runs, _env(runs, True), name, "--foreground", "--budget-trials", "12",
                     "--batch-size", "3", "--workers", "2", "--controller", "transformer",
                     "--task-config", '{"sleep": 0.2}', *extra)
        assert res.returncode == 0, res.stderr
        with Store(RunDir(runs / name).store_url(), readonly=True) as st:
            trials = st.trials(st.get_search(name).id, purposes=["search"])
            versions[name] = [t.controller_version for t in trials]
    assert versions["default"].count(0) >= 8  # the bound is 9; an update may come first
    assert versions["ahead"].count(0) <= 5 and max(versions["ahead"]) >= 3, versions
