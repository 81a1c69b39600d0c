"""benchmarks/proof4_report.py (issue 21 §4) end to end: two tiny real searches on the
synthetic task (conv2-3 at a 32 px input, so site maps 32/16/8; one TPE search seeded with
two tuned baselines, one random search), a real ``adsearch verify`` comparing them, then
the script as a subprocess: the PNGs are written and non-empty, summary.json has one object
per claim with the schema, the figures it reports equal the ones recomputed here, a second
run writes the same summary and keeps what someone filled in, the runs are only read, and
without matplotlib it refuses and writes nothing."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_daemon_support import run_cli

from adsearch.rank import spearman

pytest.importorskip("matplotlib", reason="proof4_report.py draws with matplotlib (the plot "
                    "extra): pip install 'adsearch[plot]'")

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "proof4_report.py"
RESULTS = ROOT / "benchmarks" / "results" / "proof4"
TASK = '{"space": "conv2-3", "input_side": 32}'
KEYS = {"claim", "target", "measured", "ci", "met"}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two finished searches under ``runs`` and a verify report of both."""
    base = tmp_path_factory.mktemp("p4")
    runs = base / "runs"
    common = ["--task", "synthetic", "--task-config", TASK, "--workers", "1",
              "--budget-trials", "6", "--batch-size", "2", "--child-seed", "0", "--foreground"]
    seeds = [a for f in ("dropout-0.2", "dropblock-0.2")
             for a in ("--enqueue", str(RESULTS / "seeds" / f"{f}.json"))]
    # generous timeouts: each step takes seconds, but the CPU may be shared
    run_cli(runs, "start", "--name", "p4-cifar-tpe", "--controller", "tpe", *seeds,
            "--recheck-top", "1", "--recheck-seeds", "1", *common, timeout=600)
    run_cli(runs, "start", "--name", "p4-cifar-random", "--controller", "random",
            "--no-recheck", *common, timeout=600)
    verify = base / "verify.json"
    run_cli(runs, "verify", "p4-cifar-tpe", "--top-k", "1", "--seeds", "2", "--baselines",
            "dropout", "--compare", "p4-cifar-random", "-o", str(verify),
            "--png", str(base / "verify.png"), timeout=600)
    out = base / "out"
    out.mkdir()
    for name in ("regime.json", "regime_summary.json"):
        shutil.copy(RESULTS / name, out / name)
    return {"runs": runs, "out": out, "verify": verify}


def _report(made: dict[str, Path], *pre: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *pre, str(SCRIPT), "--runs", str(made["runs"]),
                           "--out", str(made["out"]), "--verify", str(made["verify"]),
                           "--verify", str(made["out"] / "absent.json"),
                           "--task", "synthetic"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def _stores(runs: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(runs.glob("*/adsearch.db"))}


def test_report_draws_and_summarises_what_exists(made: dict[str, Path]) -> None:
    before = _stores(made["runs"])
    proc = _report(made)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = made["out"]
    for name in ("searches.png", "learned_reward.png", "patterns.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    assert _stores(made["runs"]) == before  # read-only: no store changed
    text = proc.stdout
    # what is missing is said, one line each
    assert "missing: search p4-cifar-reinforce" in text and "missing: search p4-cifar-v1" in text
    assert "p4-cifar-random left out (random search learns from nothing)" in text
    assert f"missing: verify report {out / 'absent.json'}" in text
    assert "calibrate.json (adsearch calibrate has not written it yet)" in text
    # the markdown table: one row per search, the maps recorded for the search (32/16/8)
    rows = [ln for ln in text.splitlines() if ln.startswith("| p4-cifar-")]
    assert [r.split()[1] for r in rows] == ["p4-cifar-tpe", "p4-cifar-random"]
    assert "site 0 (32x32 map)" in rows[0] and "site 2 (8x8 map)" in rows[0]
    assert "(re-check mean of 2;" in rows[0] and "(one seed)" in rows[1]

    summary = json.loads((out / "summary.json").read_text())
    assert isinstance(summary, list) and len(summary) >= 6
    for c in summary:
        assert KEYS <= set(c), c
        assert c["ci"] is None or (len(c["ci"]) == 2 and c["ci"][0] <= c["ci"][1])
        assert c["met"] in (True, False, None)
        if c["measured"] is None:
            assert c["met"] is None and c["note"], c  # why it is not measured
    by = {c["claim"]: c for c in summary}
    # the regime claim is the scan's test gap, in points
    gap = json.loads((out / "regime_summary.json").read_text())[0]["test_gap"]
    reg = by["regime (CIFAR C32): best tuned regularizer vs none at its own best length"]
    assert reg["measured"] == pytest.approx(100 * gap["mean"], abs=1e-3) and reg["met"] is True
    assert reg["ci"] == pytest.approx([100 * gap["lo"], 100 * gap["hi"]], abs=1e-3)
    # the LM regime claim: the scan's LM protocol that met the criterion, else the largest gap
    lm = [r for r in json.loads((out / "regime_summary.json").read_text())
          if r["protocol"].startswith("L") and r.get("test_gap")]
    lmc = by["regime (LM): best tuned regularizer vs none at its own best length"]
    if lm:
        best = next((r for r in lm if r["met"]), min(lm, key=lambda r: r["test_gap"]["mean"]))
        assert lmc["measured"] == pytest.approx(100 * best["test_gap"]["mean"], abs=0.01)
        assert lmc["met"] is any(r["met"] for r in lm)
        assert all(f"{r['protocol']}: {r['pick']}" in lmc["note"] for r in lm)
        assert (lmc["ci"] is None) == (best["test_gap"]["n"] < 2)
    else:
        assert lmc["measured"] is None and "the lead fills it" in lmc["note"]
    # best searched vs best baseline: the searched row with the best validation mean
    doc = json.loads(made["verify"].read_text())
    searched = [r for r in doc["regularizers"] if r["role"] in ("pattern", "compared")]
    pick = max(searched, key=lambda r: r["val"]["mean"])
    claim = by["CIFAR: best searched vs best tuned baseline"]
    assert claim["measured"] == pytest.approx(pick["vs_best_baseline"]["mean"], abs=1e-4)
    assert claim["ci"] == pytest.approx([pick["vs_best_baseline"]["lo"],
                                         pick["vs_best_baseline"]["hi"]], abs=1e-4)
    assert claim["met"] == (claim["measured"] >= 0.5 and claim["ci"][0] > 0)
    wins = by["which search wins at equal budget"]
    assert {t["search"] for t in wins["table"]} == {"p4-cifar-tpe", "p4-cifar-random"}
    assert wins["met"] is False  # 2 of the 4 searches
    first, second = wins["table"]
    assert first["test_mean"] >= second["test_mean"] and wins["winner"] == first["search"]
    # each search against each other, paired on test: here the one pair, the claim's margin
    (pair,) = wins["pairs"]
    assert (pair["a"], pair["b"]) == (first["search"], second["search"])
    assert pair["mean"] == wins["measured"] and pair["ci"] == wins["ci"]
    transfer = by["transfer"]  # the scan's translation probes (no transfer.json here)
    assert transfer["measured"] is None and transfer["note"].startswith("not run")
    assert "T4k-e24: dropout 0.1" in transfer["note"]
    for c in ("LM: best searched vs best tuned baseline", "which search wins at equal budget (LM)"):
        assert by[c]["measured"] is None and "no verify report of task wikitext2" in by[c]["note"]
    assert "missing: no LM search (p4-lm-*)" in text

    # the regime cross-check: per seed, Spearman against the best validated point (the scan's
    # children keep their best epoch, as calibrate ranks them), then the median over seeds
    cal = json.loads((out / "calibrate_regime.json").read_text())
    rows40 = [r for r in json.loads((out / "regime.json").read_text())
              if r.get("protocol") in (None, "C32")]  # the searched protocol, not the LM's
    assert len(rows40) == 40
    assert cal["full_epochs"] == 40 and len(cal["epochs"]) == 39 and cal["keep_best"] is True
    for e in (1, 20, 39):
        rhos = []
        for seed in {r["seed"] for r in rows40}:
            curves = [r["curve"] for r in rows40 if r["seed"] == seed]
            at = [next(p["val_metric"] for p in c if p["epoch"] == e) for c in curves]
            final = [max(p["val_metric"] for p in c) for c in curves]  # keep_best
            rho = spearman(at, final)
            assert rho is not None
            rhos.append(rho)
        got = cal["epochs"][e - 1]
        assert got["epoch"] == e
        assert got["median_spearman"] == pytest.approx(statistics.median(rhos), abs=1e-12)
    assert "regime scan cross-check" in text and "recommended rungs" in text


def test_lm_searches_get_their_own_figures_and_relative_claims(made: dict[str, Path],
                                                               tmp_path: Path) -> None:
    """An LM search (``p4-lm-*``, a seq space) is drawn apart from the CIFAR ones, and a
    verify report whose metric is lower-is-better answers the LM claims in paired relative %
    (here round 3's real WikiText-2 verify report)."""
    runs, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    for name in ("regime.json", "regime_summary.json"):
        shutil.copy(RESULTS / name, out / name)
    seq = ["--task", "synthetic", "--task-config", '{"space": "seq2-2"}', "--workers", "1",
           "--budget-trials", "4", "--batch-size", "2", "--child-seed", "0", "--foreground",
           "--no-recheck"]
    run_cli(runs, "start", "--name", "p4-lm-random", "--controller", "random", *seq,
            timeout=600)
    lm = ROOT / "benchmarks" / "results" / "proof3" / "lm-verify.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--runs", str(runs), "--out", str(out),
                           "--verify", str(lm)], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("searches_lm.png", "patterns_lm.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert not (out / "searches.png").exists()  # no CIFAR search: no CIFAR figure
    assert "p4-lm-random left out (random search learns from nothing)" in proc.stdout
    row = next(ln for ln in proc.stdout.splitlines() if ln.startswith("| p4-lm-random"))
    assert "site 0" in row and "seq2-2" in row
    by = {c["claim"]: c for c in json.loads((out / "summary.json").read_text())}
    doc = json.loads(lm.read_text())
    rows = {r["label"]: r for r in doc["regularizers"]}
    searched = [r for r in doc["regularizers"] if r["role"] in ("pattern", "compared")]
    pick = max(searched, key=lambda r: r["val"]["mean"])  # on validation
    base = rows[doc["best_baseline"]]["test_by_seed"]
    rel = [100 * (v / base[k] - 1) for k, v in pick["test_by_seed"].items()]
    assert len(rel) == 5
    mean, half = statistics.fmean(rel), 2.7764451 * statistics.stdev(rel) / math.sqrt(5)
    claim = by["LM: best searched vs best tuned baseline"]
    assert claim["measured"] == pytest.approx(mean, abs=1e-3)
    assert claim["ci"] == pytest.approx([mean - half, mean + half], abs=1e-3)
    assert claim["met"] is (mean <= -2 and mean + half < 0)
    assert claim["unit"] == "% test perplexity"
    wins = by["which search wins at equal budget (LM)"]
    first, second = wins["table"]
    assert first["test_mean"] <= second["test_mean"]  # perplexity: lower first
    (pair,) = wins["pairs"]
    assert pair["mean"] == wins["measured"] < 0 and wins["met"] is False  # 2 of 4
    # no CIFAR report among them: the CIFAR claims say why
    assert by["CIFAR: best searched vs best tuned baseline"]["measured"] is None


def test_a_second_run_writes_the_same_and_keeps_what_was_filled_in(
        made: dict[str, Path]) -> None:
    path = made["out"] / "summary.json"
    if not path.exists():  # this test alone
        assert _report(made).returncode == 0
    first = path.read_text()
    assert _report(made).returncode == 0
    assert path.read_text() == first  # idempotent
    doc: list[dict[str, Any]] = json.loads(first)
    for c in doc:
        if c["claim"] == "transfer":
            c.update(measured=10.4, ci=[9.9, 10.9], met=True, note="BLEU, filled by hand")
    doc.append({"claim": "an added claim", "target": "x", "measured": None, "ci": None,
                "met": None, "note": "added by hand"})
    path.write_text(json.dumps(doc))
    assert _report(made).returncode == 0
    again = {c["claim"]: c for c in json.loads(path.read_text())}
    assert again["transfer"]["measured"] == 10.4 and again["transfer"]["met"] is True
    assert again["an added claim"]["note"] == "added by hand"
    assert math.isfinite(again["CIFAR: best searched vs best tuned baseline"]["measured"])


def test_without_matplotlib_it_refuses_and_writes_nothing(made: dict[str, Path],
                                                          tmp_path: Path) -> None:
    empty = tmp_path / "out"
    block = ("import runpy, sys; sys.modules['matplotlib'] = None; "
             f"sys.argv = [{str(SCRIPT)!r}, '--runs', {str(made['runs'])!r}, '--out', "
             f"{str(empty)!r}]; runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 1
    assert "needs matplotlib" in proc.stderr or "matplotlib, which is not installed" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not empty.exists()


def test_the_transfer_claim_comes_from_the_scan_then_the_transfer_run(tmp_path: Path) -> None:
    """A translation protocol's scan (none and Dropout 0.1, 5 seeds) meets the premise; the
    claim says the transfer has not run, then, once proof4_transfer.py has rendered its runs
    of the LM export, holds their paired test-BLEU difference against the tuned Dropout."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import proof4_claims

    proto = "T4k-d256-e16"
    rows = tmp_path / "regime.json"
    noise = [0.3, -0.2, 0.1, 0.0, -0.1]
    rows.write_text(json.dumps(
        [{"protocol": proto, "regularizer": reg, "seed": s, "val_bleu": 30 + s + gain + n,
          "test_bleu": 29 + s + gain - n, "best_epoch": 16, "seconds": 600.0}
         for s, n in enumerate(noise) for reg, gain in (("none", 0.0), ("dropout 0.1", 1.0))]))
    summary = tmp_path / "regime_summary.json"
    regime = [sys.executable, str(ROOT / "benchmarks" / "proof4_regime.py"), "--render",
              "--out", str(rows)]
    assert subprocess.run(regime, capture_output=True, timeout=120).returncode == 0
    transfer = tmp_path / "transfer.json"
    claim = proof4_claims.transfer_claim(summary, transfer)
    assert claim["measured"] is None and claim["note"].startswith(f"not run yet: {proto} met")
    export = [0.5, 0.5, 0.4, 0.6, 0.5]  # the export's test BLEU over the tuned Dropout's
    transfer.write_text(json.dumps({
        "protocol": proto, "pattern_file": "lm-tpe.json", "pattern_sha256": "x",
        "runs": [{"protocol": proto, "regularizer": "LM export", "seed": s,
                  "val_bleu": 31 + s, "test_bleu": 30 + s + e - noise[s]}
                 for s, e in enumerate(export)]}))
    render = [sys.executable, str(ROOT / "benchmarks" / "proof4_transfer.py"), "--protocol",
              proto, "--render", "--rows", str(rows), "--out", str(transfer)]
    done = subprocess.run(render, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "tuned Dropout = dropout 0.1" in done.stdout and "target" in done.stdout
    claim = proof4_claims.transfer_claim(summary, transfer)
    assert claim["measured"] == pytest.approx(statistics.fmean(export))
    assert claim["ci"][0] < claim["measured"] < claim["ci"][1] and claim["met"] is True
    assert claim["unit"] == "BLEU points" and "dropout 0.1" in claim["note"]
