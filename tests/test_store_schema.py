"""Schema revisions: new stores at head, refusing and upgrading old ones, the `db` commands."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from store_backends import *  # noqa: F403  (fixtures: store_url, store, sqlite_url, pg_base_url)
from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.errors import SchemaOutOfDateError, StoreError
from adsearch.store import SCHEMA_HEAD, SCHEMA_REVISIONS, Store, current_revision, upgrade
from adsearch.store.models import Base
from adsearch.store.schema import alembic_config

FIXTURE = Path(__file__).parent / "fixtures" / "store_0001.db"


@pytest.fixture
def old_store(tmp_path: Path) -> str:
    """A copy of the committed revision-0001 store file, as a URL."""
    path = tmp_path / "old.db"
    shutil.copy(FIXTURE, path)
    return f"sqlite:///{path}"


def test_revision_list_matches_the_migrations() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    chain = [r.revision for r in script.walk_revisions()][::-1]
    assert tuple(chain) == SCHEMA_REVISIONS and script.get_current_head() == SCHEMA_HEAD


def _schema_diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()


def test_migrations_build_the_same_schema_as_the_models(store_url: str) -> None:
    assert upgrade(store_url) == (None, SCHEMA_HEAD)
    assert _schema_diff(store_url) == []


def test_new_store_is_created_at_head(store_url: str) -> None:
    Store(store_url).close()
    assert current_revision(store_url) == SCHEMA_HEAD
    assert _schema_diff(store_url) == []


def test_old_store_is_refused_with_the_upgrade_command(old_store: str) -> None:
    for readonly in (False, True):
        with pytest.raises(SchemaOutOfDateError) as info:
            Store(old_store, readonly=readonly)
        assert str(info.value) == (
            f"schema is at revision 0001, this adsearch needs {SCHEMA_HEAD}: "
            f"run `adsearch db upgrade --store {old_store}`"
        )
    assert current_revision(old_store) == "0001"  # refusing changed nothing


def test_upgrading_the_old_file_keeps_its_rows(old_store: str) -> None:
    assert upgrade(old_store) == ("0001", SCHEMA_HEAD)
    with Store(old_store, readonly=True) as st:
        s = st.get_search("old-cifar")
        assert s.state == "stopped" and s.config["task"] == "cifar10"
        assert st.counts(s.id) == {"queued": 1, "running": 1, "done": 1, "failed": 0, "stale": 0}
        ((trial, result),) = st.top_trials(s.id, 5)
        assert trial.pattern[0]["size"] == 5 and trial.tokens == [1, 2, 3] and trial.seed == 101
        assert (result.reward, result.seconds, result.metrics) == (0.875, 12.5, {"accuracy": 0.875})
        assert (result.learned_reward, result.cache_of, trial.purpose) == (None, None, "search")
        assert trial.created_at.isoformat() == "2026-01-02T03:04:05+00:00"
        assert st.trials(s.id, states=["running"])[0].pid == 4242
        ckpt = st.latest_checkpoint(s.id)
        assert ckpt is not None and ckpt.trial_ids == [1] and ckpt.path.endswith("000001.pt")
        assert st.events(s.id) == []
    with Store(old_store) as st:  # the new table works
        st.log_event(1, "db.upgrade", "upgraded to 0002")
        assert [e.kind for e in st.events(1)] == ["db.upgrade"]
    assert upgrade(old_store) == (SCHEMA_HEAD, SCHEMA_HEAD)  # idempotent


def test_newer_and_foreign_databases_are_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    upgrade(f"sqlite:///{newer}")
    with sqlite3.connect(newer) as con:
        con.execute("UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(StoreError, match="revision 0099, which this adsearch .* does not know"):
        Store(f"sqlite:///{newer}")
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as con:
        con.execute("CREATE TABLE mine (x INTEGER)")
    for call in (lambda: Store(f"sqlite:///{foreign}"), lambda: upgrade(f"sqlite:///{foreign}")):
        with pytest.raises(StoreError, match="not an adsearch store"):
            call()
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(StoreError, match=r"is empty: create it with `adsearch db upgrade"):
        Store(f"sqlite:///{empty}", readonly=True)


def test_a_failed_upgrade_changes_nothing(old_store: str) -> None:
    with pytest.raises(StoreError, match="Can't locate revision"):
        upgrade(old_store, "0042")
    assert current_revision(old_store) == "0001"


def test_db_cli_current_and_upgrade(
    old_store: str, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["db", "current", "--store", old_store])
    assert res.exit_code == 0, res.output
    assert f"0001 (out of date, this adsearch needs {SCHEMA_HEAD})" in res.output
    res = runner.invoke(app, ["db", "upgrade", "--store", old_store])
    assert res.exit_code == 0, res.output
    assert f"upgraded from revision 0001 to {SCHEMA_HEAD}" in res.output
    monkeypatch.setenv("ADSEARCH_STORE", sqlite_url)  # the option's default
    res = runner.invoke(app, ["db", "upgrade"])
    assert res.exit_code == 0, res.output
    assert f"created at revision {SCHEMA_HEAD}" in res.output
    res = runner.invoke(app, ["db", "current"])
    assert res.exit_code == 0 and res.output.strip() == f"{SCHEMA_HEAD} (head)", res.output


def test_db_cli_errors_are_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADSEARCH_STORE", raising=False)
    runner = CliRunner()
    res = runner.invoke(app, ["db", "current"])
    assert res.exit_code == 2 and "Missing option '--store'" in res.output
    missing = f"sqlite:///{tmp_path / 'nope.db'}"
    res = runner.invoke(app, ["db", "current", "--store", missing])
    assert res.exit_code == 1 and "no store at" in res.output and "Traceback" not in res.output


def test_db_upgrade_subprocess_smoke(old_store: str) -> None:
    cmd = [sys.executable, "-m", "adsearch", "db", "upgrade", "--store", old_store]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"upgraded from revision 0001 to {SCHEMA_HEAD}" in proc.stdout
