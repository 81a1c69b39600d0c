"""Read commands straight from a store (issue 13 §2): `status`, `list`, `show`, `export` and
`plot` take `--store URL --search NAME` instead of a run directory, so a `db copy
--remap-ids` copy (which has none) can be read; and docs/scale-out.md §4, run as written,
on a real SQLite run directory and a real local PostgreSQL (tests/store_backends.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from store_backends import *  # noqa: F403  (fixtures: pg_base_url)
from store_backends import _fresh_database
from test_daemon_support import cli_env, run_cli, wait_for
from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.daemon.config import SearchConfig
from adsearch.daemon.launch import create_search
from adsearch.daemon.rundir import RunDir
from adsearch.daemon.runner import run_daemon
from adsearch.patterns import load_patternset
from adsearch.store import Store

runner = CliRunner()


def cli(runs: Path, *args: str, **env: str | None) -> Any:
    return runner.invoke(app, list(args), env={"ADSEARCH_RUNS": str(runs), "ADSEARCH_STORE": None,
                                               **env})


def ok(res: Any) -> Any:
    assert res.exit_code == 0, res.output
    return res


def refused(res: Any, *needles: str) -> str:
    """One ``error:`` line that says each of ``needles``, exit status 1."""
    assert res.exit_code == 1, res.output
    text = " ".join(res.output.split())
    assert text.startswith("error: "), res.output
    for n in needles:
        assert n in text, (n, res.output)
    return text


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two finished synthetic searches in run directories with their own SQLite stores."""
    root = tmp_path_factory.mktemp("readstore") / "runs"
    for name in ("one", "two"):
        cfg = SearchConfig(name=name, task="synthetic", controller="random", batch_size=2,
                           workers=1, budget_trials=4, seed=1 if name == "one" else 2)
        run_daemon(str(create_search(cfg, RunDir(root / name)).path))
    return root


def _url(runs: Path, name: str) -> str:
    return f"sqlite:///{runs / name / 'adsearch.db'}"


def test_status_show_export_plot_list_read_a_store_without_a_run_directory(
        runs: Path, tmp_path: Path) -> None:
    url = _url(runs, "one")
    empty = tmp_path / "no-runs"  # no run directory anywhere: only the store is read
    via_dir = json.loads(ok(cli(runs, "status", "one", "--json")).stdout)
    snap = json.loads(ok(cli(empty, "status", "--store", url, "--search", "one", "--json")).stdout)
    assert snap["run_dir"] is None and snap["daemon"] == {"pid": None, "alive": None,
                                                          "slot_source": None}
    assert snap["elapsed_s"] is None and snap["state"] == snap["stored_state"] == "finished"
    for key in ("counts", "top", "best", "trend", "config"):
        assert snap[key] == via_dir[key], key
    assert snap["waiting"] == []  # a finished search: nothing waits
    text = ok(cli(empty, "status", "--store", url, "--search", "one")).output
    assert "no run directory: daemon state unknown" in text and "no daemon running" not in text
    watched = ok(cli(empty, "status", "--store", url, "--search", "one", "--watch",
                     "--interval", "0.1")).output
    assert "the store says it ended; watch ended" in watched

    best = snap["best"]["trial_id"]
    # show: --store falls back to $ADSEARCH_STORE; logs live in the run directory, so none
    shown = json.loads(ok(cli(empty, "show", "--search", "one", str(best), "--json",
                              ADSEARCH_STORE=url)).stdout)
    assert shown["run_dir"] is None and shown["logs"] == [] and shown["trial"]["id"] == best
    assert shown["result"]["reward"] == snap["best"]["reward"]
    view = ok(cli(empty, "show", "--store", url, "--search", "one", str(best))).output
    assert "no run directory" in " ".join(view.split())
    # the old spelling `show TRIAL -s NAME` (no store given) still reads the run directory
    old = json.loads(ok(cli(runs, "show", str(best), "-s", "one", "--json")).stdout)
    assert old["run_dir"] == str(runs / "one") and old["logs"]

    out = tmp_path / "best.json"
    ok(cli(empty, "export", "--store", url, "--search", "one", "--best", "-o", str(out)))
    ps = load_patternset(out)
    win = snap["recheck"]["winner"]  # export picks on the re-check mean (issue 19 §5)
    assert win is not None and snap["recheck"] == via_dir["recheck"]
    assert ps.provenance.trial_id == win["trial_id"] and ps.provenance.reward == win["reward"]

    png = tmp_path / "p.png"
    ok(cli(empty, "plot", "--store", url, "--search", "one", "-o", str(png)))
    assert png.stat().st_size > 1000

    rows = json.loads(ok(cli(empty, "list", "--store", url, "--json")).stdout)
    assert [(r["search"], r["state"], r["daemon_pid"], r["trials"]) for r in rows] == [
        ("one", "finished", None, 4 + 6)]  # 4 search trials, then 3 patterns x 2 seeds
    assert "daemon state unknown" in ok(cli(empty, "list", "--store", url)).output


def test_a_search_the_store_calls_running_is_not_called_crashed_without_a_run_dir(
        runs: Path, tmp_path: Path) -> None:
    """Only the run directory knows whether a daemon lives: read from the store alone, a
    `running` search stays `running` (a run directory with no daemon would make it `crashed`)."""
    url = f"sqlite:///{tmp_path / 'copy.db'}"
    ok(cli(runs, "db", "copy", _url(runs, "one"), url))
    with Store(url) as st:
        st.set_search_state(st.get_search("one").id, "running")
    snap = json.loads(ok(cli(tmp_path, "status", "--search", "one", "--json",
                             ADSEARCH_STORE=url)).stdout)
    assert snap["state"] == "running" and snap["daemon"]["alive"] is None
    (note,) = snap["waiting"]
    assert "the store says running" in note and "unknown" in note
    rows = json.loads(ok(cli(tmp_path, "list", "--store", url, "--json")).stdout)
    assert rows[0]["state"] == "running" and rows[0]["daemon_pid"] is None


def test_store_and_search_bad_input_is_one_clear_error(runs: Path, tmp_path: Path) -> None:
    url = _url(runs, "one")
    refused(cli(runs, "status", "--search", "one"), "--store URL", "$ADSEARCH_STORE")
    refused(cli(runs, "export", "--search", "one", "--best"), "--store URL")
    refused(cli(runs, "status", "--store", url, "--search", "nope"),
            "no search named 'nope'", "known: one")
    refused(cli(runs, "status", "--store", url, "--search", "one", "--run-dir", str(runs / "one")),
            "--run-dir and --search exclude each other")
    refused(cli(runs, "status", "two", "--store", url, "--search", "one"), "give the search once")
    refused(cli(runs, "show", "two", "1", "--store", url, "--search", "one"), "give the search once")
    refused(cli(runs, "status", "--store", url), "--search NAME")
    refused(cli(runs, "plot", "--store", url), "--search NAME")
    refused(cli(runs, "status", "--store", f"sqlite:///{tmp_path / 'none.db'}", "--search", "one"),
            "no store at")
    assert not (tmp_path / "none.db").exists()


# -- docs/scale-out.md §4, as written -------------------------------------------------------


@pytest.fixture
def shared_pg(pg_base_url: str) -> Iterator[str]:
    """A PostgreSQL database shared by several searches (it holds other ones already)."""
    yield from _fresh_database(pg_base_url)


@pytest.fixture
def own_pg(pg_base_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for the moved search (`createdb adsearch_big`)."""
    yield from _fresh_database(pg_base_url, "adsearch_test_big")


def test_scale_out_section_4_moves_a_search_and_publishes_a_read_copy(
        runs: Path, tmp_path: Path, shared_pg: str, own_pg: str) -> None:
    root = tmp_path / "runs"
    env = cli_env(root)
    env.pop("ADSEARCH_STORE", None)
    ok(cli(root, "db", "copy", _url(runs, "one"), shared_pg))  # the shared database's tenant
    run_cli(root, "start", "--task", "synthetic", "--name", "big", "--controller", "random",
            "--workers", "1", "--batch-size", "2", "--budget-trials", "10",
            "--task-config", '{"sleep": 0.3}', env=env)
    src = f"sqlite:///{root / 'big' / 'adsearch.db'}"

    def done() -> int:
        with Store(src, readonly=True) as st:
            return st.counts(st.get_search("big").id)["done"]

    wait_for(lambda: done() >= 3, 120, "3 finished trials")
    # step 1, `adsearch stop big`: a warm stop, and again on the stopped search (exit 0 both)
    assert "it has exited" in run_cli(root, "stop", "big", env=env).stdout
    assert "nothing to stop" in run_cli(root, "stop", "big", env=env).stdout

    env_shared = {**env, "ADSEARCH_STORE": shared_pg}
    run_cli(root, "db", "upgrade", "--store", shared_pg, env=env_shared)
    # into the shared database the ids collide: refused, naming both ways out
    res = run_cli(root, "db", "copy", src, shared_pg, "--search", "big", "--run-dir",
                  str(root / "big"), env=env_shared, check=False)
    assert res.returncode == 1 and res.stdout == ""
    said = " ".join(res.stderr.split())
    assert said.startswith("error: ids of search 'big' are taken") and "new database" in said
    assert "--remap-ids" in said and "--store" in said and "--search big" in said
    assert RunDir(root / "big").store_url() == src  # the run directory is left as it was
    # the read-only copy into the shared database, read with --store/--search
    out = run_cli(root, "db", "copy", src, shared_pg, "--search", "big", "--remap-ids",
                  env=env_shared).stdout
    assert "ids remapped" in out and "--store" in out
    want = json.loads(run_cli(root, "status", "big", "--json", env=env).stdout)
    got = json.loads(run_cli(root, "status", "--search", "big", "--json", env=env_shared).stdout)
    assert got["counts"] == want["counts"] and got["run_dir"] is None
    assert got["best"]["reward"] == want["best"]["reward"]
    assert got["best"]["trial_id"] != want["best"]["trial_id"]  # remapped past the tenant's ids
    shown = json.loads(run_cli(root, "show", "--search", "big", str(got["best"]["trial_id"]),
                               "--json", env=env_shared).stdout)
    mine = json.loads(run_cli(root, "show", "big", str(want["best"]["trial_id"]), "--json",
                              env=env).stdout)
    assert shown["trial"]["pattern"] == mine["trial"]["pattern"]
    run_cli(root, "export", "--search", "big", "--best", "-o", str(tmp_path / "b.json"),
            env=env_shared)
    assert load_patternset(tmp_path / "b.json").provenance.reward == want["best"]["reward"]

    # the move, into a database of its own: ids preserved, then `adsearch resume big`
    run_cli(root, "db", "upgrade", "--store", own_pg, env=env)
    out = run_cli(root, "db", "copy", src, own_pg, "--search", "big", "--run-dir",
                  str(root / "big"), env=env).stdout
    assert "ids preserved" in out
    run_cli(root, "resume", "big", env=env)
    wait_for(lambda: json.loads(run_cli(root, "status", "big", "--json", env=env).stdout)
             ["state"] == "finished", 120, "the resumed search to finish")
    snap = json.loads(run_cli(root, "status", "big", "--json", env=env).stdout)
    # 10 search trials, then the re-check (the top 3 patterns on 2 more seeds)
    assert snap["store"].startswith("postgresql") and snap["budget"]["drawn"] == 10
    assert snap["counts"]["done"] == 10 + snap["recheck"]["total"] == 16
    with Store(own_pg, readonly=True) as st:
        assert st.counts(st.get_search("big").id, purposes=["search"])["done"] == 10
    with Store(src, readonly=True) as st:  # the old SQLite store was not written after the move
        assert st.counts(st.get_search("big").id)["done"] < 10
