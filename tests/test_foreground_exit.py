"""``start --foreground`` / ``resume --foreground`` exit non-zero when the search ends
``failed``, so a script or CI job that runs a search in the foreground sees the failure."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from adsearch.cli.main import app

runner = CliRunner()


def test_foreground_search_that_fails_exits_1(tmp_path: Path) -> None:
    env = {"ADSEARCH_RUNS": str(tmp_path / "runs")}
    res = runner.invoke(app, ["start", "--task", "synthetic", "--name", "allbad", "--task-config",
                              '{"bad_fraction": 1.0}', "--budget-trials", "12", "--workers", "1",
                              "--foreground"], env=env)
    assert res.exit_code == 1, res.output
    assert "error: search 'allbad' failed:" in " ".join(res.stderr.split())
    ok = runner.invoke(app, ["start", "--task", "synthetic", "--name", "fine", "--budget-trials", "2",
                             "--workers", "1", "--foreground"], env=env)
    assert ok.exit_code == 0, ok.output
