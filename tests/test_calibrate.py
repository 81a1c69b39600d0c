"""`adsearch calibrate` (issue 19 §3): the rank maths against hand-computed cases, the
recommendation rule, real calibrations (synthetic task and a tiny real LM) through the CLI
and a real subprocess, resuming after a crash, and the CLI's clean errors."""

from __future__ import annotations

import gzip
import itertools
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_cli_search import assert_clean_error
from test_daemon_support import cli_env
from typer.testing import CliRunner

from adsearch.calibrate import analysis as A
from adsearch.cli.main import app
from adsearch.rank import kendall_tau_b, mid_ranks, null_sd, spearman

runner = CliRunner()


def cli(cwd: Path, *args: str) -> Any:
    old = os.getcwd()
    os.chdir(cwd)  # the default work directory is ./calibrations
    try:
        return runner.invoke(app, list(args))
    finally:
        os.chdir(old)


# ----------------------------------------------------------------------------- rank maths
def test_mid_ranks_share_the_mean_rank_of_a_tie() -> None:
    assert mid_ranks([10, 30, 20, 30, 5]) == [2.0, 4.5, 3.0, 4.5, 1.0]
    assert mid_ranks([7, 7, 7]) == [2.0, 2.0, 2.0]


def test_spearman_hand_cases() -> None:
    assert spearman([1, 2, 3, 4, 5], [2, 4, 6, 8, 10]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4, 5], [9, 7, 5, 3, 1]) == pytest.approx(-1.0)
    # monotone maps change nothing: ppl against 80/ppl is exactly -1
    ppl = [71.0, 84.5, 79.2, 90.1]
    assert spearman(ppl, [80 / p for p in ppl]) == pytest.approx(-1.0)
    # with a tie in y: ranks y = [1, 2, 3.5, 5, 3.5]; by hand sxy = 8, sxx = 10, syy = 9.5
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / math.sqrt(95))
    assert spearman([1, 2, 3], [4, 4, 4]) is None  # a constant side: undefined
    assert spearman([1.0], [2.0]) is None
    with pytest.raises(ValueError):
        spearman([1, 2], [1])


def test_kendall_tau_b_hand_cases() -> None:
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)  # C=5, D=1
    # ties: C = 4, D = 0, one pair tied in x, one in y: 4 / sqrt(5 * 5)
    assert kendall_tau_b([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)
    assert kendall_tau_b([1, 1], [2, 3]) is None


def test_spearman_null_spread_is_one_over_sqrt_n_minus_1() -> None:
    """Over every permutation of n distinct values rho has mean 0 and variance exactly
    1/(n-1): the spread the calibration reports is the true one, not an approximation."""
    for n in (4, 5, 6):
        rhos = [spearman(list(range(n)), list(p)) for p in itertools.permutations(range(n))]
        vals = [r for r in rhos if r is not None]
        mean = sum(vals) / len(vals)
        var = sum(v * v for v in vals) / len(vals)
        assert abs(mean) < 1e-12 and var == pytest.approx(1 / (n - 1), rel=1e-12)
        assert null_sd(n) == pytest.approx(math.sqrt(var))


# ----------------------------------------------------------------------------- analysis
def _curve(values: list[float], final: float) -> list[dict[str, float]]:
    pts = [{"epoch": float(e), "val_metric": v} for e, v in enumerate(values, 1)]
    return pts + [{"epoch": float(len(values) + 1), "val_metric": final}]


def test_agreement_table_and_the_reliable_tail() -> None:
    """Five references, full budget 5: epochs 1-2 rank backwards, 3 forwards, 4 partly
    backwards: at threshold 0.7 epoch 3 qualifies alone (noted, not recommended), at 0.6
    the tail 3-4 is recommended."""
    finals = [1.0, 2.0, 3.0, 4.0, 5.0]
    per_epoch = [[5, 4, 3, 2, 1], [5, 4, 3, 2, 1], [1, 2, 3, 4, 5], [3, 1, 2, 5, 4]]
    curves = [_curve([per_epoch[e][i] for e in range(4)], finals[i]) for i in range(5)]
    rows = A.agreement_table(curves, 5.0, "val_metric", 0.7)
    assert [r.epoch for r in rows] == [1.0, 2.0, 3.0, 4.0]
    assert [r.n for r in rows] == [5] * 4
    assert rows[0].spearman == pytest.approx(-1.0) and rows[2].spearman == pytest.approx(1.0)
    assert rows[3].spearman == pytest.approx(0.6)  # d = (2,-1,-1,1,-1): 1 - 6*8/120
    assert [r.qualifies for r in rows] == [False, False, True, False]
    assert A.recommend(rows) == []  # epoch 4 fails, so the tail is empty
    rows2 = A.agreement_table(curves, 5.0, "val_metric", 0.6)
    assert A.recommend(rows2) == [3.0, 4.0]
    notes = A.notes(rows, [], 5, 5)
    assert any("epoch(s) 3 reach the threshold but a later epoch does not" in n for n in notes)


def test_a_reference_without_a_final_value_is_left_out_and_counted() -> None:
    curves = [_curve([1, 2], 3.0), _curve([2, 3], 4.0), _curve([3, 4], 5.0),
              [{"epoch": 1.0, "val_metric": 9.0}]]  # diverged after epoch 1
    rows = A.agreement_table(curves, 3.0, "val_metric", 0.7)
    assert [r.n for r in rows] == [3, 3] and rows[0].spearman == pytest.approx(1.0)
    doc = A.build_doc(task="t", task_config={}, space="seq-2", full_epochs=3.0,
                      metric="val_metric", threshold=0.7, seed=0,
                      references=[{"label": str(i), "stored": [], "status": "ok",
                                   "curve": c} for i, c in enumerate(curves)])
    assert doc["n_final"] == 3 and doc["references"][3]["final"] is None
    assert any("1 of 4 reference(s) have no final value" in n for n in doc["notes"])
    assert doc["recommended_rungs"] == [1.0, 2.0] and doc["first_rung"] == 1.0


def test_keep_best_ranks_against_the_best_validated_point() -> None:
    """With keep_best a child reports its best validated point, so the calibration's final
    value is that point's (ties with the last go to the last, as tasks/childloop.py), and
    the agreement is against it: here the last epoch ranks the three references backwards
    while their best points rank as epoch 1 does."""
    curves = [
        [{"epoch": 1.0, "val_metric": 0.1, "val_loss": 3.0},
         {"epoch": 2.0, "val_metric": 0.5, "val_loss": 1.0},
         {"epoch": 3.0, "val_metric": 0.3, "val_loss": 2.0}],
        [{"epoch": 1.0, "val_metric": 0.2, "val_loss": 2.5},
         {"epoch": 2.0, "val_metric": 0.6, "val_loss": 0.9},
         {"epoch": 3.0, "val_metric": 0.2, "val_loss": 2.4}],
        [{"epoch": 1.0, "val_metric": 0.3, "val_loss": 2.0},
         {"epoch": 2.0, "val_metric": 0.7, "val_loss": 0.8},
         {"epoch": 3.0, "val_metric": 0.7, "val_loss": 0.7}],
    ]
    assert [A.final_value(c, 3.0, "val_metric") for c in curves] == [0.3, 0.2, 0.7]
    assert [A.final_value(c, 3.0, "val_metric", keep_best=True) for c in curves] == [
        0.5, 0.6, 0.7]
    # the loss of the chosen point; the third reference's tie goes to the last point
    assert [A.final_value(c, 3.0, "val_loss", keep_best=True) for c in curves] == [
        1.0, 0.9, 0.7]
    assert A.final_value(curves[0][:2], 3.0, "val_metric", keep_best=True) is None
    plain = A.agreement_table(curves, 3.0, "val_metric", 0.7)
    kept = A.agreement_table(curves, 3.0, "val_metric", 0.7, keep_best=True)
    assert plain[0].spearman == pytest.approx(0.5) and kept[0].spearman == pytest.approx(1.0)
    refs = [{"label": str(i), "stored": [], "status": "ok", "curve": c}
            for i, c in enumerate(curves)]
    doc = A.build_doc(task="t", task_config={"keep_best": True}, space="s", full_epochs=3.0,
                      metric="val_metric", threshold=0.7, seed=0, references=refs)
    assert [r["final"] for r in doc["references"]] == [0.5, 0.6, 0.7]
    assert doc["epochs"][0]["spearman"] == pytest.approx(1.0)


def test_keep_best_on_a_perplexity_curve_takes_the_childs_best_epoch() -> None:
    """A perplexity curve (``val_metric`` lower is better, the LM's): the child keeps its
    lowest point (chosen on the reward scale) and says which in ``metrics["best_epoch"]``;
    the final value is that point's, not the highest perplexity (round 4's LM calibration
    ranked the references by their worst, first epoch before this)."""
    curves = [
        [{"epoch": 1.0, "val_metric": 118.0}, {"epoch": 2.0, "val_metric": 80.0},
         {"epoch": 3.0, "val_metric": 84.0}],
        [{"epoch": 1.0, "val_metric": 115.0}, {"epoch": 2.0, "val_metric": 81.0},
         {"epoch": 3.0, "val_metric": 105.0}],
        [{"epoch": 1.0, "val_metric": 116.0}, {"epoch": 2.0, "val_metric": 83.0},
         {"epoch": 3.0, "val_metric": 82.0}],
    ]
    bests = [2.0, 2.0, 3.0]
    kept = [A.final_value(c, 3.0, "val_metric", True, b)
            for c, b in zip(curves, bests, strict=True)]
    assert kept == [80.0, 81.0, 82.0]
    # without the child's word (an older record) the highest point is taken: epoch 1 here
    assert [A.final_value(c, 3.0, "val_metric", True) for c in curves] == [118.0, 115.0, 116.0]
    refs = [{"label": str(i), "stored": [], "status": "ok", "curve": c,
             "metrics": {"best_epoch": b}} for i, (c, b) in enumerate(zip(curves, bests, strict=True))]
    doc = A.build_doc(task="t", task_config={"keep_best": True}, space="s", full_epochs=3.0,
                      metric="val_metric", threshold=0.7, seed=0, references=refs)
    assert [r["final"] for r in doc["references"]] == [80.0, 81.0, 82.0]
    # epoch 2 ranks them as their kept points do; epoch 1 backwards
    assert doc["epochs"][1]["spearman"] == pytest.approx(1.0)
    assert doc["epochs"][0]["spearman"] == pytest.approx(-0.5)


def test_too_few_references_recommend_nothing() -> None:
    curves = [_curve([1], 1.0), _curve([2], 2.0)]
    doc = A.build_doc(task="t", task_config={}, space="s", full_epochs=2.0, metric="val_metric",
                      threshold=0.7, seed=0,
                      references=[{"label": "a", "stored": [], "status": "ok", "curve": c}
                                  for c in curves])
    assert doc["recommended_rungs"] == [] and doc["recommendation"].startswith("no recommendation")


def test_config_differences_ignore_keys_that_change_no_value() -> None:
    a = {"epochs": 16, "curve_points": 3, "test": True, "lr": 1e-3}
    b = {"epochs": 16, "curve_points": 0, "test": False, "lr": 2e-3}
    assert A.config_differences(a, b) == ["lr: 0.001 vs 0.002"]


def test_with_keep_best_when_to_validate_counts() -> None:
    """keep_best picks the reported length among the validated passes, so a calibration made
    with other validation times does not apply."""
    a = {"epochs": 16, "eval_every": 1, "keep_best": True, "test": True}
    b = {"epochs": 16, "eval_every": 4, "keep_best": True, "test": False}
    assert A.config_differences(a, b) == ["eval_every: 1 vs 4"]
    assert A.config_differences({**a, "keep_best": False}, b) == [
        "eval_every: 1 vs 4", "keep_best: False vs True"]


# ----------------------------------------------------------------------------- real runs
REFS = ("--reference", "none", "--reference", "dropout:0.1", "--reference", "dropout:0.2",
        "--reference", "spatial:0.3", "--reference", "dropblock:0.05:3")


def test_calibrate_synthetic_reverse_curves_recommends_only_late_rungs(tmp_path: Path) -> None:
    """Synthetic curves that rank backwards before half the budget: early epochs get a
    negative Spearman, the recommendation starts after the crossing, and -o, --plot and the
    work directory hold the same document."""
    cfg = json.dumps({"epochs": 8, "curve": "reverse", "noise_sd": 0.0})
    res = cli(tmp_path, "calibrate", "--task", "synthetic", "--task-config", cfg, *REFS,
              "--workers", "2", "-o", "cal.json", "--plot", "cal.png")
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "cal.json").read_text())
    assert doc["kind"] == "adsearch-calibration" and doc["full_epochs"] == 8.0
    assert [r["epoch"] for r in doc["epochs"]] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    rho = {r["epoch"]: r["spearman"] for r in doc["epochs"]}
    assert rho[1.0] < 0 and rho[2.0] < 0 and rho[3.0] < 0  # backwards before E/2 = 4
    assert rho[5.0] > 0.7 and rho[7.0] > 0.7
    assert doc["recommended_rungs"] == [5.0, 6.0, 7.0] and doc["first_rung"] == 5.0
    assert all(r["n"] == 5 for r in doc["epochs"])
    assert (tmp_path / "cal.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    work = Path(tmp_path / doc["work_dir"])
    assert json.loads((work / "calibration.json").read_text())["epochs"] == doc["epochs"]
    assert "Spearman" in res.stdout and "rungs at epoch(s) 5, 6, 7" in res.stdout
    assert "steps of 0.100" in res.stdout  # the count and coarseness are said
    # a rerun trains nothing: every reference is kept in the work directory
    again = cli(tmp_path, "calibrate", "--task", "synthetic", "--task-config", cfg, *REFS,
                "--json")
    assert again.exit_code == 0, again.output
    assert "5/5 reference(s) already done" in again.stderr and "started" not in again.stderr
    assert json.loads(again.stdout)["epochs"] == doc["epochs"]


def test_calibrate_agreeing_curves_recommend_every_epoch(tmp_path: Path) -> None:
    res = cli(tmp_path, "calibrate", "--task", "synthetic", "--task-config",
              '{"epochs": 4, "noise_sd": 0.0}', *REFS, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # --json: the document and nothing else on stdout
    assert doc["recommended_rungs"] == [1.0, 2.0, 3.0]
    assert all(r["spearman"] == pytest.approx(1.0) for r in doc["epochs"])


def test_calibrate_resumes_after_a_crash(tmp_path: Path) -> None:
    """A reference whose finished file is missing is trained again; one whose child wrote
    its result before a crash (no finished file yet) is adopted without training."""
    cfg = '{"epochs": 3, "sleep": 0.0}'
    args = ("calibrate", "--task", "synthetic", "--task-config", cfg, *REFS, "--work-dir", "w")
    assert cli(tmp_path, *args).exit_code == 0
    work = tmp_path / "w"
    finished = sorted(work.glob("*.json"))
    finished = [p for p in finished if p.name != "calibration.json"]
    assert len(finished) == 5
    finished[0].unlink()  # crash after the child's result, before the finished file
    finished[1].unlink()  # crash mid-run: nothing of it is kept
    for p in (work / finished[1].stem).iterdir():
        p.unlink()
    res = cli(tmp_path, *args, "--json")
    assert res.exit_code == 0, res.output
    assert "3/5 reference(s) already done" not in res.stderr  # the result was adopted ...
    assert "4/5 reference(s) already done" in res.stderr  # ... so only one is trained
    assert res.stderr.count("started ") == 1
    assert finished[0].exists() and finished[1].exists()


def test_calibrate_failed_runs_write_no_calibration(tmp_path: Path) -> None:
    res = cli(tmp_path, "calibrate", "--task", "synthetic", "--task-config",
              '{"epochs": 3, "bug": "NameError"}', *REFS, "--work-dir", "w", "-o", "cal.json")
    assert_clean_error(res, "5 reference run(s) failed", "NameError", "child.log")
    assert not (tmp_path / "cal.json").exists() and not (tmp_path / "w" / "calibration.json").exists()


def test_calibrate_tiny_real_language_model(tmp_path: Path, data_slices: Path) -> None:
    """A real LM (WikiText-2 lines shipped with the tests), three references, 3 epochs:
    every epoch has a value from the child's rung evaluation and the final value from its
    full validation."""
    lines = gzip.decompress((data_slices / "wikitext-2-head.txt.gz").read_bytes()).decode()
    lines = lines.splitlines()
    wt = tmp_path / "wt"
    wt.mkdir()
    for name, part in (("train", lines[:300]), ("valid", lines[500:540]),
                       ("test", lines[560:600])):
        (wt / f"{name}.txt").write_text("\n".join(part) + "\n", encoding="utf-8")
    cfg = {"data": str(wt), "d_model": 32, "d_ff": 64, "n_heads": 2, "n_layers": 1, "bptt": 16,
           "batch_size": 4, "max_vocab": 200, "train_tokens": 1024, "epochs": 3, "test": False}
    res = cli(tmp_path, "calibrate", "--task", "wikitext2", "--task-config", json.dumps(cfg),
              "--reference", "none", "--reference", "dropout:0.3", "--reference",
              "variational:0.5", "--workers", "1", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["task"] == "wikitext2" and doc["space"] == "seq-2" and doc["n_final"] == 3
    for ref in doc["references"]:
        assert [p["epoch"] for p in ref["values"]] == [1.0, 2.0]
        assert all(p["value"] is not None and p["value"] > 1 for p in ref["values"])  # ppl
        assert ref["final"] == pytest.approx(ref["curve"][-1]["val_metric"])
    assert [r["n"] for r in doc["epochs"]] == [3, 3]


def test_calibrate_subprocess_smoke(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "adsearch", "calibrate", "--task", "synthetic",
                          "--task-config", '{"epochs": 2}', *REFS, "--json"],
                         cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["epochs"][0]["n"] == 5


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("args", "needles"), [
    (("--task", "nosuch"), ("unknown task 'nosuch'",)),
    (("--task", "synthetic", "--reference", "dropout"), ("--reference 'dropout'", "KIND:RATE")),
    (("--task", "synthetic", "--reference", "bogus:0.1", "--reference", "none",
      "--reference", "dropout:0.1"), ("unknown baseline 'bogus'",)),
    (("--task", "synthetic", "--task-config", '{"space": "seq-2"}', "--reference", "none",
      "--reference", "dropout:0.1", "--reference", "dropblock:0.1:3"),
     ("dropblock does not apply to a seq space",)),
    (("--task", "synthetic", "--reference", "none", "--reference", "dropout:0.1"),
     ("2 reference(s)", "at least 3")),
    (("--task", "synthetic", "--reference", "none", "--reference", "none",
      "--reference", "dropout:0.1"), ("given twice",)),
    (("--task", "synthetic", "--child-epochs", "1"), ("no whole epoch lies before it",)),
    (("--task", "synthetic", "--threshold", "2"), ("--threshold",)),
    (("--task", "synthetic", "--metric", "acc"), ("--metric", "val_metric or val_loss")),
    (("--task", "synthetic", "--pattern", "missing.json", "--reference", "none",
      "--reference", "dropout:0.1"), ("missing.json does not exist",)),
    (("--task", "synthetic", "--task-config", "{oops"), ("--task-config: invalid JSON",)),
])
def test_calibrate_errors_are_clean_and_write_nothing(tmp_path: Path, args: tuple[str, ...],
                                                      needles: tuple[str, ...]) -> None:
    res = cli(tmp_path, "calibrate", *args, "-o", "cal.json")
    assert_clean_error(res, *needles)
    assert list(tmp_path.iterdir()) == []  # no work directory, no output


def test_calibrate_takes_a_pattern_file(tmp_path: Path) -> None:
    from adsearch.patterns import SearchSpace, save_patternset
    from adsearch.patterns.patternset import PatternSet

    space = SearchSpace.from_name("conv-3")
    files = []
    for i in range(3):
        ps = PatternSet(space, space.sample(random.Random(i)))
        files += ["--pattern", str(save_patternset(ps, tmp_path / f"p{i}.json"))]
    res = cli(tmp_path, "calibrate", "--task", "synthetic", "--task-config", '{"epochs": 3}',
              *files, "--reference", "none", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [r["label"] for r in doc["references"]] == ["none", "pattern p0.json",
                                                        "pattern p1.json", "pattern p2.json"]
    assert doc["n_final"] == 4
