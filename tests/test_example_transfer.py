"""examples/c_transfer_mobilenet.py as a real subprocess at a tiny budget."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from adsearch.patterns import ConvPattern, PatternSet, SearchSpace, load_patternset, save_patternset

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "c_transfer_mobilenet.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=300, cwd=REPO
    )


def test_transfer_run_with_the_committed_pattern_file() -> None:
    ps = load_patternset(REPO / "examples" / "patterns" / "mobilenet_v2_cifar_conv5.json")
    assert ps.space == SearchSpace("conv", 5)
    proc = _run("--steps", "2")
    assert proc.returncode == 0, proc.stderr
    m = re.fullmatch(
        r"space conv-5, 52 ops; steps 2, last loss ([\d.]+), val_acc ([\d.]+)\n", proc.stdout
    )
    assert m, proc.stdout
    assert 0.0 < float(m.group(1)) < 10.0 and 0.0 <= float(m.group(2)) <= 1.0


def test_pattern_file_for_another_site_count_is_refused(tmp_path: Path) -> None:
    wrong = save_patternset(
        PatternSet(SearchSpace("conv", 3), [ConvPattern()] * 3), tmp_path / "wrt.json"
    )
    proc = _run(str(wrong), "--steps", "1")
    assert proc.returncode != 0
    assert "space conv-3 (3 site(s)), but this model has 5 site(s)" in proc.stderr, proc.stderr
