"""The data rule of tests/conftest.py, run for real: pytest in a subprocess on a tiny test file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

USES_DATA = "def test_uses_data(shared_data):\n    assert shared_data.is_dir()\n"


def _pytest(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    tests = tmp_path / "tests"
    tests.mkdir(exist_ok=True)
    shutil.copyfile(REPO / "tests" / "conftest.py", tests / "conftest.py")
    (tests / "test_x.py").write_text(USES_DATA)
    clean = {k: v for k, v in os.environ.items() if k not in ("ADSEARCH_SHARED_DATA", "ADSEARCH_REQUIRE_DATA")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tests)],
                          cwd=tmp_path, env={**clean, **env}, capture_output=True, text=True, timeout=120)


def test_missing_data_skips_and_names_the_variable(tmp_path: Path) -> None:
    r = _pytest(tmp_path, ADSEARCH_SHARED_DATA=str(tmp_path / "nonexistent"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 skipped" in r.stdout and "set ADSEARCH_SHARED_DATA" in r.stdout, r.stdout


@pytest.mark.parametrize("flag", ["1", "yes"])
def test_ci_mode_turns_the_skip_into_a_failure(tmp_path: Path, flag: str) -> None:
    r = _pytest(tmp_path, ADSEARCH_SHARED_DATA=str(tmp_path / "nonexistent"), ADSEARCH_REQUIRE_DATA=flag)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1 error" in r.stdout and "ADSEARCH_REQUIRE_DATA is set" in r.stdout, r.stdout
    assert "skipped" not in r.stdout


def test_ci_mode_with_data_runs_the_test(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    r = _pytest(tmp_path, ADSEARCH_SHARED_DATA=str(tmp_path / "data"), ADSEARCH_REQUIRE_DATA="1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout and "skipped" not in r.stdout, r.stdout


def test_ci_script_sets_the_variable() -> None:
    assert "export ADSEARCH_REQUIRE_DATA=1" in (REPO / ".ci" / "run").read_text()
