"""The rough edges of issue 23 §5, each on a real store and real daemon children.

- `export` writes the best pattern without `--best` (the only mode; `--best` still works);
- `list` never cuts the search name (what a user copies), even at 80 columns;
- `--help` shows no `<bool>` after a flag;
- `show`'s log tail has the budget in words, not a raw `Budget(...)` repr;
- `train` checks its arguments before it loads torch, and prints no "± 0" for one seed;
- off a terminal, Rich neither hard-wraps text at 80 columns nor squeezes tables.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.table import Table
from typer.testing import CliRunner

from adsearch.cli.console import PIPE_WIDTH, make_console
from adsearch.cli.main import app
from adsearch.daemon.config import SearchConfig
from adsearch.daemon.launch import create_search
from adsearch.daemon.rundir import RunDir
from adsearch.daemon.runner import run_daemon
from adsearch.patterns import load_patternset

runner = CliRunner()
#: A long name, as people give them: wider than the list's column at 80 columns.
LONG = "cifar-resnet18-conv5-controller-batch8-seed3-second-try-after-the-fix"


def cli(runs: Path, *args: str, **env: str) -> Any:
    return runner.invoke(app, list(args), env={"ADSEARCH_RUNS": str(runs), **env})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small finished synthetic search with a long name."""
    root = tmp_path_factory.mktemp("rough") / "runs"
    cfg = SearchConfig(name=LONG, task="synthetic", controller="random", batch_size=2,
                       workers=1, budget_trials=4)
    run_daemon(str(create_search(cfg, RunDir(root / LONG)).path))
    return root


def test_export_needs_no_best(runs: Path, tmp_path: Path) -> None:
    plain, old = tmp_path / "plain.json", tmp_path / "old.json"
    res = cli(runs, "export", LONG, "-o", str(plain))
    assert res.exit_code == 0, res.output
    assert cli(runs, "export", LONG, "--best", "-o", str(old)).exit_code == 0  # still accepted
    a, b = load_patternset(plain), load_patternset(old)
    assert a.provenance.trial_id == b.provenance.trial_id and a.patterns == b.patterns
    helptext = cli(runs, "export", "--help", COLUMNS="200").output
    assert "--best" not in helptext and "--top-k" in helptext


def test_list_keeps_the_whole_name_at_80_columns(runs: Path) -> None:
    res = cli(runs, "list", COLUMNS="80")
    assert res.exit_code == 0, res.output
    assert LONG in res.output, res.output  # on one line, whole
    assert max(len(line) for line in res.output.splitlines()) <= 80 + 2  # the table still fits


def _all_commands() -> list[list[str]]:
    """Every command and sub-command (typer builds its own click groups: duck-typed)."""
    root: Any = typer.main.get_command(app)
    out: list[list[str]] = []
    for name, cmd in root.commands.items():
        subs = getattr(cmd, "commands", None)
        out += [[name, sub] for sub in subs] if subs else [[name]]
    return out


def test_help_shows_no_bool_after_flags() -> None:
    commands = _all_commands()
    assert ["export"] in commands and ["pattern", "show"] in commands and len(commands) > 15
    for args in commands:
        res = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, (args, res.output)
        assert "<bool>" not in res.output, (args, res.output)
    status = runner.invoke(app, ["status", "--help"], env={"COLUMNS": "200"}).output
    line = next(ln for ln in status.splitlines() if "--top-k" in ln)
    assert "<int>" in line  # options that take a value keep their type


def test_show_log_tail_has_the_budget_in_words(runs: Path) -> None:
    res = cli(runs, "show", LONG, "1", COLUMNS="200")
    assert res.exit_code == 0, res.output
    assert "last " in res.output and "[child] trial 1" in res.output, res.output
    assert "Budget(" not in res.output
    assert "budget the task's default" in res.output or "budget 1 epoch" in res.output


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("args,message", [
    (["--pattern", "a.json", "--baseline", "dropout"], "give either --pattern or --baseline"),
    (["--baseline", "nosuch"], "unknown baseline 'nosuch'"),
    (["--pattern", "/nonexistent/p.json"], "does not exist"),
    (["--task-config", "{not json"], "--task-config"),
    (["--threads", "0"], "--threads: invalid value 0"),
])
def test_train_checks_arguments_before_torch(args: list[str], message: str) -> None:
    code = ("import sys\nfrom adsearch.cli.main import main\n"
            f"rc = main(['train', *{args!r}])\n"
            "print('RC', rc, 'TORCH', 'torch' in sys.modules)\n")
    proc = _python(code)
    assert "RC 1 TORCH False" in proc.stdout, (proc.stdout, proc.stderr)
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_train_one_seed_prints_no_plus_minus_zero(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    one = runner.invoke(app, ["train", "--task", "synthetic", "--seeds", "1", "-o", str(out)],
                        env={"COLUMNS": "200"})
    assert one.exit_code == 0, one.output
    assert "±" not in one.output and "value" in one.output and "per seed" not in one.output
    summary = json.loads(out.read_text())["summary"]
    assert summary["reward"]["std"] is None and summary["reward"]["n"] == 1
    two = runner.invoke(app, ["train", "--task", "synthetic", "--seeds", "2"],
                        env={"COLUMNS": "200"})
    assert two.exit_code == 0, two.output
    assert "mean ± std" in two.output and "per seed" in two.output


def test_console_off_a_terminal_does_not_wrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    buf = io.StringIO()
    con = make_console(file=buf)
    assert not con.is_terminal and con.width == PIPE_WIDTH
    con.print("x" * 300)  # a long hint or path: one line, for the reader to wrap
    table = Table()
    table.add_column("search")
    table.add_column("error")
    table.add_row(LONG, "y" * 90)
    con.print(table)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "x" * 300
    assert any(LONG in ln and "y" * 90 in ln for ln in lines)  # no cell wrapped
    monkeypatch.setenv("COLUMNS", "80")  # asked for 80 columns: then they are 80
    buf80 = io.StringIO()
    narrow = make_console(file=buf80)
    narrow.print("x" * 300)
    assert narrow.width == 80 and buf80.getvalue().splitlines()[0] == "x" * 80


def test_a_missing_run_directory_is_named_as_missing(tmp_path: Path) -> None:
    """A --run-dir that does not exist says so (it used to say "no search.json", as for a
    directory that exists but holds no search), and nothing is created there."""
    missing = tmp_path / "p4-cifar-random"
    for args in (["status", "x", "--run-dir", str(missing)],
                 ["show", "x", "1", "--run-dir", str(missing)]):
        res = cli(tmp_path / "runs", *args)
        assert res.exit_code != 0, res.output
        assert "does not exist" in res.output and "Traceback" not in res.output, res.output
    assert not missing.exists()
    (tmp_path / "empty").mkdir()
    res = cli(tmp_path / "runs", "status", "x", "--run-dir", str(tmp_path / "empty"))
    assert res.exit_code != 0 and "no search.json" in res.output, res.output
