"""A ``--script`` child run by a Python that lacks a module names that interpreter (issue
23 §4): the message says which program ran the script, and that it is not the Python
adsearch runs in. A real second interpreter (a bare venv, no packages) runs real scripts.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from adsearch.patterns import ConvPattern
from adsearch.tasks.result import Budget
from adsearch.tasks.script import ScriptError, ScriptTask, interpreter

PATS = [ConvPattern(size=2, stride=2), ConvPattern(size=1, stride=1)]


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a venv with no packages at all (no torch, no adsearch)."""
    root = tmp_path_factory.mktemp("bare") / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
    py = root / "bin" / "python"
    gone = subprocess.run([str(py), "-c", "import torch"], capture_output=True, text=True)
    assert "No module named 'torch'" in gone.stderr  # it really lacks torch
    return py


def _run(command: str, workdir: Path) -> ScriptError:
    task = ScriptTask()
    cfg = task.config_from_dict({"command": command, "workdir": str(workdir), "space": "conv-2"})
    with pytest.raises(ScriptError) as err:
        task.run_child(cfg, PATS, Budget(), "cpu", 0)
    return err.value


def test_a_python_without_torch_is_named(bare_python: Path, tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("import torch\n")
    exc = _run(f"{bare_python} train.py", tmp_path)
    msg = str(exc)
    assert "uncaught ModuleNotFoundError: No module named 'torch'" in msg
    assert f"(run by {bare_python}, not by the Python adsearch runs in, {sys.executable}" in msg
    assert f"--script '{sys.executable} ...'" in msg
    assert exc.user_exception == "ModuleNotFoundError"  # still the user's bug for classify


def test_a_script_run_through_its_shebang_names_that_interpreter(
    bare_python: Path, tmp_path: Path
) -> None:
    script = tmp_path / "train.py"
    script.write_text(f"#!{bare_python}\nimport torch\n")
    script.chmod(0o755)
    assert interpreter(["./train.py"], tmp_path) == str(bare_python)
    assert f"(run by {bare_python}, not by the Python" in str(_run("./train.py", tmp_path))


def test_the_same_interpreter_is_named_without_advice(tmp_path: Path) -> None:
    msg = str(_run(f"{sys.executable} -c 'import adsearch_no_such_module'", tmp_path))
    assert msg.endswith(f"No module named 'adsearch_no_such_module' (run by {sys.executable})")


def test_other_failures_carry_no_interpreter(tmp_path: Path) -> None:
    msg = str(_run(f"{sys.executable} -c 'raise ValueError(3)'", tmp_path))
    assert "uncaught ValueError: 3" in msg and "run by" not in msg
