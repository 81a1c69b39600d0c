"""Proof round 4 report, the claims: one object per claim of issue 21's table
(``summary.json``), from the regime scan's summary, the verify reports and the transfer
runs.

Part of benchmarks/proof4_report.py. Selection is on validation only; test values come from
verify reports and are reported, not selected on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from proof4_searches import ORDER, say

LM_TARGET = -2.0  # % test perplexity: best searched vs best tuned baseline (issue 21 §3)
#: Accuracy metrics are reported in points (x100), as the issue's targets are.
POINTS = 100.0
CIFAR_TARGET = 0.5  # points: best searched vs best tuned baseline (issue 21 §3)
REGIME_TARGET = 1.5  # points: best tuned regularizer vs early-stopped none (issue 21 §1)

CLAIM_REGIME = "regime ({protocol}): best tuned regularizer vs none at its own best length"
CLAIM_LM_REGIME = "regime (LM): best tuned regularizer vs none at its own best length"
CLAIM_CIFAR = "CIFAR: best searched vs best tuned baseline"
CLAIM_LM = "LM: best searched vs best tuned baseline"
CLAIM_WINS = "which search wins at equal budget"
CLAIM_WINS_LM = "which search wins at equal budget (LM)"
CLAIM_TRANSFER = "transfer"
TARGETS = {
    CLAIM_LM_REGIME: "at least 5% of test perplexity, 95% CI excluding 0, >= 5 paired seeds",
    CLAIM_CIFAR: "+0.5 points",
    CLAIM_LM: "at least 2% lower test perplexity, CI reported",
    CLAIM_WINS: "a table, with CIs, of the four searches",
    CLAIM_WINS_LM: "a table, with CIs, of the four searches",
    CLAIM_TRANSFER: ("the LM's exported pattern, unchanged, on a translation protocol where "
                     "tuned Dropout beats none on validation BLEU; BLEU at least that of "
                     "tuned Dropout"),
}
#: Channels of one example drawn per site in patterns.png (a 2x2 mosaic).
LEAD_NOTE = "not measured by benchmarks/proof4_report.py: the lead fills it"


def _claim(claim: str, target: str, measured: Any = None, ci: list[float] | None = None,
           met: bool | None = None, note: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"claim": claim, "target": target, "measured": measured, "ci": ci,
                           "met": met}
    if note is not None:
        out["note"] = note
    out.update(extra)
    return out


def _scale(metric: str) -> tuple[float, str]:
    """Accuracy differences in points (x100); any other metric on its own scale."""
    return (POINTS, "points") if metric.endswith("_acc") else (1.0, metric)


def regime_claims(path: Path) -> list[dict[str, Any]]:
    """One claim per protocol of the regime scan that measured its test gap."""
    if not path.is_file():
        say(f"missing: {path}: the regime claim is left unmeasured")
        return [_claim(CLAIM_REGIME.format(protocol="CIFAR"),
                       f"at least +{REGIME_TARGET:g} points of test accuracy, 95% CI "
                       "excluding 0, >= 5 paired seeds", note=f"{path.name} missing")]
    out = []
    for s in json.loads(path.read_text(encoding="utf-8")):
        gap = s.get("test_gap")
        if not gap:
            say(f"regime {s.get('protocol')}: no rows in {path.name} (not run): no claim")
            continue
        if not str(s.get("protocol", "")).startswith("C"):  # LM: lm_regime_claim; translation
            continue
        out.append(_claim(
            CLAIM_REGIME.format(protocol=f"CIFAR {s.get('protocol')}"),
            f"at least +{REGIME_TARGET:g} points of test accuracy, 95% CI excluding 0, >= 5 "
            "paired seeds",
            round(gap["mean"] * POINTS, 3),
            [round(gap["lo"] * POINTS, 3), round(gap["hi"] * POINTS, 3)], s.get("met"),
            f"{s.get('pick')} (picked on validation) minus early-stopped none, test accuracy "
            f"points over {gap['n']} paired seeds", unit="points", source=path.name))
    return out


def lm_regime_claim(path: Path) -> dict[str, Any]:
    """The LM regime claim from the scan's LM protocols (names starting with ``L``): the one
    that met the criterion, else the one with the largest measured gap (the lowest mean
    relative test-perplexity difference of its pick against none), every probed protocol
    listed in the note. Values in % (negative: the pick has lower perplexity than none)."""
    target = TARGETS[CLAIM_LM_REGIME]
    rows = ([s for s in json.loads(path.read_text(encoding="utf-8"))
             if str(s.get("protocol", "")).startswith("L") and s.get("test_gap")]
            if path.is_file() else [])
    if not rows:
        return _claim(CLAIM_LM_REGIME, target, note=LEAD_NOTE)

    def pct(v: float) -> float:
        return round(v * POINTS, 2)

    def line(s: dict[str, Any]) -> str:
        g = s["test_gap"]
        ci = (f" [{pct(g['lo']):+.2f}, {pct(g['hi']):+.2f}]" if g["n"] >= 2
              and math.isfinite(g["lo"]) else "")
        return (f"{s['protocol']}: {s['pick']} (picked on validation) {pct(g['mean']):+.2f}%"
                f"{ci} test perplexity vs early-stopped none over {g['n']} seed(s)")

    met = [s for s in rows if s.get("met")]
    best = met[0] if met else min(rows, key=lambda s: s["test_gap"]["mean"])
    g = best["test_gap"]
    ok = g["n"] >= 2 and math.isfinite(g["lo"])
    why = ("met" if met else "no LM protocol met it; the largest measured gap is "
           f"{best['protocol']}'s")
    return _claim(CLAIM_LM_REGIME, target, pct(g["mean"]),
                  [pct(g["lo"]), pct(g["hi"])] if ok else None, bool(met),
                  f"{why}. " + "; ".join(line(s) for s in rows), unit="% test perplexity",
                  source=path.name)


def transfer_claim(regime_summary: Path, transfer: Path) -> dict[str, Any]:
    """The transfer claim from ``transfer.json`` (benchmarks/proof4_transfer.py: the LM
    export against the tuned Dropout of a translation protocol's scan, paired test BLEU
    points) when it holds a summary; else, when the regime scan probed translation protocols
    (names starting with ``T``), a note of why it has not run: each probe's validation gap
    of its best rate over none. The lead's note stays when neither exists."""
    target = TARGETS[CLAIM_TRANSFER]
    doc = json.loads(transfer.read_text(encoding="utf-8")) if transfer.is_file() else {}
    s = doc.get("summary") or {}
    pick = s.get("tuned_dropout")
    d = (s.get(f"vs {pick}") or {}).get("test_bleu") if pick else None
    if d and d.get("n"):
        ok = d["n"] >= 2 and math.isfinite(d["lo"])
        v = (s.get(f"vs {pick}") or {}).get("val_bleu") or {}
        n_none = (s.get("vs none") or {}).get("test_bleu") or {}
        scan = s.get("scan_val_gap") or {}
        note = (f"{s['protocol']}: LM export ({s.get('pattern_file')}, unchanged) minus "
                f"{pick} (tuned on validation by the scan; its validation gain over none "
                f"{scan.get('mean', math.nan):+.2f} BLEU over {scan.get('n', 0)} seeds, "
                f"criterion met: {s.get('scan_met')}), test BLEU points over {d['n']} paired "
                f"seeds; validation {v.get('mean', math.nan):+.2f}; against none, test "
                f"{n_none.get('mean', math.nan):+.2f}; met: mean >= 0 over >= 5 seeds (the CI "
                "need not exclude 0: the target is 'at least', not 'better than')")
        return _claim(CLAIM_TRANSFER, target, round(d["mean"], 3),
                      [round(d["lo"], 3), round(d["hi"], 3)] if ok else None,
                      bool(s.get("met")) and bool(s.get("scan_met")), note,
                      unit="BLEU points", source=transfer.name)
    rows = ([r for r in json.loads(regime_summary.read_text(encoding="utf-8"))
             if str(r.get("protocol", "")).startswith("T") and r.get("val_gap")]
            if regime_summary.is_file() else [])
    if not rows:
        return _claim(CLAIM_TRANSFER, target, note=LEAD_NOTE)

    def line(r: dict[str, Any]) -> str:
        g = r["val_gap"]
        ci = (f" [{g['lo']:+.2f}, {g['hi']:+.2f}]" if g["n"] >= 2 and math.isfinite(g["lo"])
              else "")
        return (f"{r['protocol']}: {r['pick']} {g['mean']:+.2f}{ci} validation BLEU vs none "
                f"over {g['n']} seed(s){' (met)' if r.get('met') else ''}")

    met = [r["protocol"] for r in rows if r.get("met")]
    why = (f"not run yet: {', '.join(met)} met the premise (run benchmarks/proof4_transfer.py)"
           if met else "not run: no translation protocol has shown tuned Dropout above none "
           "on validation BLEU over 5 seeds (the transfer target's premise)")
    return _claim(CLAIM_TRANSFER, target, note=f"{why}. Probed: "
                  + "; ".join(line(r) for r in rows), unit="BLEU points",
                  source=regime_summary.name)


def searched_rows(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Search name -> the verify row of its best pattern: ``pattern 1`` is the verified
    search's (its export), ``NAME best`` a ``--compare`` search's."""
    out = {}
    for r in doc.get("regularizers") or []:
        if r.get("role") == "pattern" and r.get("label") == "pattern 1":
            out[str(doc["search"])] = r
        elif r.get("role") == "compared":
            out[str(r["label"]).removesuffix(" best")] = r
    return out


def _diff(d: dict[str, Any] | None, scale: float) -> dict[str, Any] | None:
    if not d or not d.get("n"):
        return None
    ok = d["n"] >= 2 and math.isfinite(d["lo"])
    return {"mean": round(d["mean"] * scale, 4),
            "ci": [round(d["lo"] * scale, 4), round(d["hi"] * scale, 4)] if ok else None,
            "n": d["n"], "significant": bool(d.get("significant"))}


def _rel(a: dict[Any, Any], b: dict[Any, Any]) -> dict[str, Any] | None:
    """Paired relative difference ``a / b - 1`` in %, over the seeds both have, with its 95%
    t interval (the LM claims: negative is lower perplexity than ``b``)."""
    from adsearch.verify.stats import paired_diff

    x = {int(k): float(v) for k, v in a.items()}
    y = {int(k): float(v) for k, v in b.items()}
    seeds = sorted(set(x) & set(y))
    rel = {k: x[k] / y[k] - 1.0 for k in seeds if y[k]}
    return _diff(paired_diff(rel, dict.fromkeys(rel, 0.0)).to_dict(), POINTS)


def search_claims(reports: Sequence[tuple[str, dict[str, Any]]], task: str,
                  n_searches: int, lm: bool = False) -> list[dict[str, Any]]:
    """The claims a verify report answers, from the reports of ``task``: the best searched
    pattern (picked on validation mean) against the best tuned baseline of its report, and
    a table of the searches with paired CIs. ``lm``: the reports whose metric is lower-is-
    better (test perplexity), every difference the paired relative one in % (the LM target
    is relative); else higher is better, differences absolute (accuracy in points)."""
    from adsearch.verify.stats import paired_diff

    best_claim, wins_claim = (CLAIM_LM, CLAIM_WINS_LM) if lm else (CLAIM_CIFAR, CLAIM_WINS)
    mine = [(p, d) for p, d in reports
            if d.get("task") == task and bool(d.get("lower_is_better")) == lm]
    if not mine:
        why = ("verify not run yet" if not reports else
               f"no verify report of task {task} among {', '.join(p for p, _ in reports)}")
        return [_claim(best_claim, TARGETS[best_claim], note=why),
                _claim(wins_claim, TARGETS[wins_claim], note=why)]
    table = []
    for p, d in mine:
        scale, unit = _scale(d["metric"])
        rows = {str(r.get("label")): r for r in d.get("regularizers") or []}
        none = next((r for r in rows.values() if r.get("role") == "none"), None)
        base = rows.get(str(d.get("best_baseline")))
        for name, r in searched_rows(d).items():
            if not r.get("test") or not r.get("val"):
                continue
            by_seed = r.get("test_by_seed") or {}
            if lm:
                vs_none = _rel(by_seed, none["test_by_seed"]) if none else None
                vs_base = _rel(by_seed, base["test_by_seed"]) if base else None
            else:
                vs_none = _diff(r.get("vs_none"), scale)
                vs_base = _diff(r.get("vs_best_baseline"), scale)
            table.append({"search": name, "report": p, "metric": d["metric"], "unit": unit,
                          "val_mean": r["val"]["mean"],
                          "test_mean": round(r["test"]["mean"] * scale, 4),
                          "n": r["test"]["n"], "best_baseline": d.get("best_baseline"),
                          "vs_none": vs_none, "vs_best_baseline": vs_base,
                          **({"diff_unit": "% (paired relative)"} if lm else {}),
                          "_by_seed": by_seed, "_scale": scale})
    if not table:
        why = "the verify report(s) have no test value of a searched pattern yet"
        return [_claim(best_claim, TARGETS[best_claim], note=why),
                _claim(wins_claim, TARGETS[wins_claim], note=why)]
    pick = max(table, key=lambda t: t["val_mean"])  # on validation, never on test
    vb = pick["vs_best_baseline"]
    if vb is None:
        best = _claim(best_claim, TARGETS[best_claim],
                      note=f"{pick['search']}'s best has no paired value against the best "
                           "baseline in its report")
    elif lm:
        met = vb["ci"] is not None and vb["mean"] <= LM_TARGET and vb["ci"][1] < 0
        best = _claim(
            best_claim, TARGETS[best_claim], vb["mean"], vb["ci"], met,
            f"{pick['search']}'s best (the searched pattern with the best validation mean, "
            f"{pick['val_mean']:.4f}) against {pick['best_baseline']} (best tuned baseline "
            f"on validation): test perplexity, paired relative difference (searched / "
            f"baseline - 1) in % over {vb['n']} paired seeds; met: mean <= {LM_TARGET:g}% "
            "and the 95% CI below 0", unit="% test perplexity", source=pick["report"])
    else:
        met = vb["ci"] is not None and vb["mean"] >= CIFAR_TARGET and vb["ci"][0] > 0
        best = _claim(
            best_claim, TARGETS[best_claim], vb["mean"], vb["ci"], met,
            f"{pick['search']}'s best (the searched pattern with the best validation mean, "
            f"{pick['val_mean']:.4f}) minus {pick['best_baseline']} (best tuned baseline on "
            f"validation), test {pick['metric']} ({pick['unit']}) over {vb['n']} paired "
            "seeds; met: mean >= +0.5 and the 95% CI excludes 0",
            unit=pick["unit"], source=pick["report"])
    ranked = sorted(table, key=lambda t: t["test_mean"] if lm else -t["test_mean"])
    first = ranked[0]
    margin = None
    if len(ranked) > 1:
        second = ranked[1]
        if lm:
            margin = _rel(first["_by_seed"], second["_by_seed"])
        else:
            to_int = {int(k): float(v) for k, v in first["_by_seed"].items()}
            other = {int(k): float(v) for k, v in second["_by_seed"].items()}
            margin = _diff(paired_diff(to_int, other).to_dict(), first["_scale"])
    pairs = pairwise(ranked, lm)
    for t in table:
        t.pop("_by_seed")
        t.pop("_scale")
    complete = len({t["search"] for t in table}) >= n_searches
    unit = "% test perplexity" if lm else first["unit"]
    if margin is None:
        note = f"only {first['search']} verified so far"
        wins = _claim(wins_claim, TARGETS[wins_claim], None, None, None, note, table=ranked)
    else:
        sep = ("its paired 95% CI excludes 0" if margin["significant"] else
               "its paired 95% CI includes 0: not separable from it")
        best_word = "lowest" if lm else "highest"
        note = (f"{best_word} test mean: {first['search']}, {margin['mean']:+.4g} {unit} "
                f"{'relative to' if lm else 'over'} {ranked[1]['search']} (same seeds, "
                f"paired); {sep}; {len(table)} of {n_searches} searches in the table")
        wins = _claim(wins_claim, TARGETS[wins_claim], margin["mean"], margin["ci"],
                      complete, note, unit=unit, winner=first["search"],
                      table=ranked, pairs=pairs)
    return [best, wins]


def pairwise(ranked: Sequence[dict[str, Any]], lm: bool = False) -> list[dict[str, Any]]:
    """Each search against each other on test, paired by seed: ``{"a", "b", "mean", "ci",
    "n", "significant"}`` with ``a`` the one of better test mean (``ranked``'s order), in
    its unit (``lm``: the relative difference ``a / b - 1`` in %). Searches whose best is
    the same pattern pair to exactly 0."""
    from adsearch.verify.stats import paired_diff

    out = []
    for i, a in enumerate(ranked):
        for b in ranked[i + 1:]:
            if lm:
                d = _rel(a["_by_seed"], b["_by_seed"])
            else:
                d = _diff(paired_diff({int(k): float(v) for k, v in a["_by_seed"].items()},
                                      {int(k): float(v) for k, v in b["_by_seed"].items()}
                                      ).to_dict(), a["_scale"])
            out.append({"a": a["search"], "b": b["search"], **(d or {"mean": None, "ci": None,
                                                                    "n": 0})})
    return out


def build_summary(regime_summary: Path, reports: Sequence[tuple[str, dict[str, Any]]],
                  task: str, n_searches: int, old: Sequence[dict[str, Any]],
                  lm_task: str = "wikitext2", n_lm: int = len(ORDER)) -> list[dict[str, Any]]:
    """Every claim of issue 21's table. A claim this run has no numbers for keeps the one an
    earlier ``summary.json`` holds when it has numbers (``measured`` or ``met``: filled in by
    hand, or by a run that had the input this one lacks), or a note someone wrote where this
    script has only :data:`LEAD_NOTE`; claims someone added to that file stay, after these."""
    claims = regime_claims(regime_summary)
    claims.append(lm_regime_claim(regime_summary))
    claims += search_claims(reports, task, n_searches)
    claims += search_claims(reports, lm_task, n_lm, lm=True)
    claims.append(transfer_claim(regime_summary, regime_summary.with_name("transfer.json")))
    before = {c.get("claim"): c for c in old if isinstance(c, dict)}
    out = []
    for c in claims:
        prev = before.get(c["claim"])
        mine_empty = c["measured"] is None and c["met"] is None
        numbers = prev is not None and (prev.get("measured") is not None
                                        or prev.get("met") is not None)
        noted = (prev is not None and c.get("note") == LEAD_NOTE
                 and prev.get("note") not in (None, LEAD_NOTE))
        keep = mine_empty and (numbers or noted)
        out.append(prev if keep and prev is not None else c)
    mine = {c["claim"] for c in claims}
    out += [c for c in old if isinstance(c, dict) and c.get("claim") not in mine]  # added
    return out


def load_reports(paths: Sequence[Path]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for p in paths:
        if not p.is_file():
            say(f"missing: verify report {p} (verify not run yet)")
            continue
        doc = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or "regularizers" not in doc:
            say(f"missing: {p} is not a verify report (no 'regularizers')")
            continue
        out.append((str(p), doc))
    return out

