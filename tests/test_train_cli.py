"""``adsearch train``: the transfer run, through CliRunner and one real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.patterns import ConvPattern, PatternSet, SearchSpace, SeqPattern, save_patternset

runner = CliRunner()
FAST = ["--steps", "2", "--threads", "1"]


def _run(*args: str):  # noqa: ANN202
    return runner.invoke(app, ["train", *args])


def test_pattern_file_run_writes_json(tmp_path: Path) -> None:
    ps = PatternSet(SearchSpace("conv", 3), [ConvPattern(size=2), ConvPattern(residual=True), ConvPattern(size=1, stride=2)])
    pf = save_patternset(ps, tmp_path / "best.json")
    out = tmp_path / "res" / "run.json"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"depth": 10, "width": 1, "train_per_class": 20, "val_per_class": 10}))
    r = _run("--pattern", str(pf), "--seeds", "2", "--config", str(cfg), "--json-out", str(out), *FAST)
    assert r.exit_code == 0, r.output
    assert "val_acc" in r.output and "±" in r.output
    data = json.loads(out.read_text())
    assert [run["seed"] for run in data["runs"]] == [0, 1]
    assert data["regularizer"]["space"] == "conv-3" and data["config"]["depth"] == 10
    assert data["summary"]["val_acc"]["n"] == 2.0 and 0.0 <= data["summary"]["reward"]["mean"] <= 1.0
    assert not list(out.parent.glob(".run.json.*"))  # the temp file was renamed away


def test_baseline_with_test_data(tmp_path: Path, data_slices: Path) -> None:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"depth": 10, "width": 1, "train_per_class": 6, "val_per_class": 3, "test_per_class": 5, "batch_size": 20}))
    r = _run("--data", str(data_slices / "cifar10-jpg"), "--test-data", str(data_slices / "cifar10-jpg"), "--baseline", "dropblock", "--block-size", "3", "--config", str(cfg), *FAST)
    assert r.exit_code == 0, r.output
    assert "test_acc" in r.output and "dropblock" in r.output


def _refused(r: Any, *needles: str) -> None:
    """A clean refusal: exit 1 through sys.exit, no traceback, every needle in the message."""
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.exception, r.output)
    assert "Traceback" not in r.output and "error: " in r.output, r.output
    for n in needles:
        assert n in r.output, r.output


def test_clean_errors(tmp_path: Path) -> None:
    r = _run("--task", "cifar100", *FAST)
    _refused(r, "unknown task 'cifar100'", "cifar10")
    r = _run("--data", str(tmp_path / "missing"), *FAST)
    _refused(r, "missing does not exist", "ImageFolder")
    (tmp_path / "empty").mkdir()
    r = _run("--data", str(tmp_path / "empty"), *FAST)
    _refused(r, "no class sub-folders")
    seq = save_patternset(PatternSet(SearchSpace("seq", 2), [SeqPattern(), SeqPattern()]), tmp_path / "lm.json")
    r = _run("--pattern", str(seq), *FAST)
    _refused(r, "space seq-2", "conv-3")
    (tmp_path / "broken.json").write_text("{not json")
    r = _run("--pattern", str(tmp_path / "broken.json"), *FAST)
    _refused(r, "broken.json", "invalid JSON")
    r = _run("--pattern", str(tmp_path / "absent.json"), *FAST)
    _refused(r, "absent.json does not exist")
    r = _run("--pattern", str(seq), "--baseline", "dropout", *FAST)
    _refused(r, "not both")
    r = _run("--baseline", "cutout", *FAST)
    _refused(r, "unknown baseline 'cutout'")
    r = _run("--task", "wikitext2", *FAST)
    _refused(r, "needs a data path")
    r = _run("--task", "wikitext2", "--data", str(tmp_path / "empty"), "--baseline", "dropblock", *FAST)
    _refused(r, "valid.txt and test.txt")
    r = _run("--device", "cuda:7", *FAST) if not _has_cuda() else _run("--device", "tpu", *FAST)
    _refused(r, "device")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_subprocess_smoke(repo_root: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "adsearch"
    out = tmp_path / "smoke.json"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"depth": 10, "width": 1, "train_per_class": 10, "val_per_class": 10}))
    proc = subprocess.run(
        [str(exe), "train", "--baseline", "spatial", "--config", str(cfg), "--json-out", str(out), *FAST],
        capture_output=True, text=True, timeout=120, cwd=repo_root,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "val_acc" in proc.stdout
    assert json.loads(out.read_text())["regularizer"] == {"kind": "spatial", "drop_prob": 0.1}
    bad = subprocess.run([str(exe), "train", "--task", "nope"], capture_output=True, text=True, timeout=60, cwd=repo_root)
    assert bad.returncode == 1 and "error: unknown task 'nope'" in bad.stderr and "Traceback" not in bad.stderr


def test_one_name_per_thing_old_spellings_still_work(tmp_path: Path) -> None:
    """--task-config/--child-steps/-o/--json are the names (as for `start`); --config FILE,
    --steps and --json-out are hidden old spellings of the same options."""
    cfg = {"depth": 10, "width": 1, "train_per_class": 20, "val_per_class": 10}
    r = _run("--task-config", json.dumps(cfg), "--child-steps", "2", "--threads", "1", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # stdout holds the document only
    assert doc["config"]["train_per_class"] == 20 and doc["budget"]["steps"] == 2
    assert doc["runs"][0]["metrics"]["steps"] == 2
    import torch

    assert doc["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # the default
    f = tmp_path / "cfg.json"
    f.write_text(json.dumps(cfg))
    out = tmp_path / "old.json"
    r = _run("--config", str(f), "--steps", "2", "--threads", "1", "--json-out", str(out), "--device", "cpu")
    assert r.exit_code == 0, r.output
    old = json.loads(out.read_text())
    assert old["config"] == doc["config"] and old["budget"] == doc["budget"]
    helptext = _run("--help").output
    assert "--task-config" in helptext and "--child-epochs" in helptext and "--output" in helptext
    assert "--json-out" not in helptext and "--config " not in helptext and "--epochs " not in helptext
    r = _run("--child-steps", "2", "--steps", "3")
    assert r.exit_code == 1 and "give --child-steps once (--steps is its old spelling)" in r.output
    r = _run("--config", str(f), "--task-config", "{}")
    assert r.exit_code == 1 and "give --task-config JSON once" in r.output
