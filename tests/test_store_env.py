"""``ADSEARCH_STORE`` is the store of every command that takes ``--store`` (issue 13 §2):
``adsearch start`` used to ignore it and quietly create a SQLite store in the run directory."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.engine import URL
from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.store import Store

runner = CliRunner()


def test_start_uses_adsearch_store_from_the_environment(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    url = URL.create("sqlite", database=str(tmp_path / "shared" / "elsewhere.db")).render_as_string()
    (tmp_path / "shared").mkdir()
    env = {"ADSEARCH_RUNS": str(runs), "ADSEARCH_STORE": url}
    res = runner.invoke(app, ["start", "--task", "synthetic", "--name", "envstore", "--workers", "1",
                              "--budget-trials", "2", "--foreground"], env=env)
    assert res.exit_code == 0, res.output
    assert json.loads((runs / "envstore" / "search.json").read_text())["store"] == url
    assert not (runs / "envstore" / "adsearch.db").exists()
    with Store(url, readonly=True) as store:
        search = store.get_search("envstore")
        assert search.state == "finished"
        assert store.counts(search.id, purposes=["search"]).get("done") == 2  # + re-checks
    # --store still wins over the variable
    other = URL.create("sqlite", database=str(tmp_path / "other.db")).render_as_string()
    res = runner.invoke(app, ["start", "--task", "synthetic", "--name", "flag", "--workers", "1",
                              "--budget-trials", "1", "--store", other, "--foreground"], env=env)
    assert res.exit_code == 0, res.output
    assert json.loads((runs / "flag" / "search.json").read_text())["store"] == other
