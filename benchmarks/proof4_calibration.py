"""Proof round 4 report, calibration: ``adsearch calibrate``'s line for each search task,
and the cross-check from the regime scan's curves (``calibrate_regime.json``).

Part of benchmarks/proof4_report.py.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from proof4_searches import say

#: The regime protocol the searches ran in (proof4_search.sh): the regime cross-check's rows.
SEARCHED_PROTOCOL = "C32"


def calibrate_line(path: Path) -> dict[str, Any] | None:
    """Print ``adsearch calibrate``'s Spearman per epoch and recommended rungs."""
    from adsearch.calibrate.analysis import load_calibration
    from adsearch.errors import ConfigError

    if not path.is_file():
        say(f"missing: {path} (adsearch calibrate has not written it yet)")
        return None
    try:
        doc = load_calibration(path)
    except ConfigError as exc:
        say(f"missing: {exc}")
        return None
    per = ", ".join(f"{r['epoch']:g} {_rho(r['spearman'])}" for r in doc.get("epochs", []))
    rungs = ", ".join(f"{e:g}" for e in doc["recommended_rungs"]) or "none"
    full = (f"the best validated point of {doc['full_epochs']:g} epochs (keep_best)"
            if (doc.get("task_config") or {}).get("keep_best") else
            f"epoch {doc['full_epochs']:g}")
    say(f"calibrate ({path.name}, {doc.get('n_final')} references, {doc['metric']}): Spearman "
        f"per epoch vs {full}: {per}")
    say(f"calibrate: recommended rungs: {rungs}; {doc.get('recommendation', '')}")
    return doc


def _rho(v: float | None) -> str:
    return "-" if v is None else f"{v:+.2f}"


def regime_calibration(rows: Sequence[dict[str, Any]], full_epochs: float, keep_best: bool,
                       threshold: float | None = None, metric: str = "val_metric",
                       ) -> dict[str, Any]:
    """Spearman per epoch from the regime scan's curves: per seed, across its regularizers,
    against the full budget's value (:func:`adsearch.calibrate.analysis.agreement_table`, as
    ``adsearch calibrate`` computes it: with ``keep_best``, the best validated point's value,
    what such a child reports), then the median over seeds. The recommended rungs apply
    :func:`~adsearch.calibrate.analysis.recommend` to the medians."""
    from adsearch.calibrate import analysis as A

    thr = A.THRESHOLD if threshold is None else threshold
    seeds = sorted({int(r["seed"]) for r in rows})
    labels = sorted({str(r["regularizer"]) for r in rows})
    tables = {}
    for s in seeds:
        mine = sorted((r for r in rows if int(r["seed"]) == s), key=lambda r: r["regularizer"])
        tables[s] = A.agreement_table([r.get("curve") or [] for r in mine], full_epochs,
                                      metric, thr, keep_best,
                                      [A.best_epoch_of({"metrics": r}) for r in mine])
    epochs: list[dict[str, Any]] = []
    agree: list[A.EpochAgreement] = []
    for k, e in enumerate(A.rung_epochs(full_epochs)):
        per = {s: tables[s][k] for s in seeds}
        vals = [a.spearman for a in per.values() if a.spearman is not None]
        med = statistics.median(vals) if vals else None
        n = min((a.n for a in per.values()), default=0)
        ok = med is not None and n >= A.MIN_REFERENCES and med >= thr - 1e-12
        agree.append(A.EpochAgreement(e, n, med, None, ok))
        epochs.append({"epoch": e, "median_spearman": med,
                       "per_seed": {str(s): a.spearman for s, a in per.items()},
                       "n_references": {str(s): a.n for s, a in per.items()}})
    rungs = A.recommend(agree)
    n_final = min((sum(A.final_value(r.get("curve") or [], full_epochs, metric, keep_best,
                                     A.best_epoch_of({"metrics": r})) is not None
                       for r in rows if int(r["seed"]) == s) for s in seeds), default=0)
    return {"kind": "proof4-regime-calibration", "metric": metric,
            "full_epochs": float(full_epochs), "keep_best": keep_best, "threshold": thr,
            "seeds": seeds,
            "references": labels,
            "method": ("per seed: Spearman of the references' validation value at each epoch "
                       "against their full-budget value (with keep_best: the best validated "
                       "point's; adsearch.calibrate.analysis.agreement_table); then the "
                       "median over seeds"),
            "epochs": epochs, "recommended_rungs": rungs,
            "recommendation": A.recommendation_text(rungs, full_epochs, thr, n_final)}


def regime_cross_check(regime: Path, regime_summary: Path, out: Path) -> dict[str, Any] | None:
    if not regime.is_file():
        say(f"missing: {regime} (the regime scan): calibrate_regime.json skipped")
        return None
    rows = json.loads(regime.read_text(encoding="utf-8"))
    rows = rows["rows"] if isinstance(rows, dict) else rows
    # the searched protocol only: the rows file also holds the LM and translation scans
    rows = [r for r in rows if r.get("protocol") in (None, SEARCHED_PROTOCOL)]
    if not rows:
        say(f"missing: no {SEARCHED_PROTOCOL} rows in {regime}: calibrate_regime.json skipped")
        return None
    full = max((float(p["epoch"]) for r in rows for p in r.get("curve") or []
                if p.get("epoch") is not None), default=0.0)
    protocols = sorted({str(r.get("protocol")) for r in rows})
    keep_best = False  # the scan's child config (regime_summary.json), as calibrate reads it
    if regime_summary.is_file():
        for s in json.loads(regime_summary.read_text(encoding="utf-8")):
            cfg = s.get("config") or {}
            if s.get("protocol") in protocols and cfg.get("epochs"):
                full, keep_best = float(cfg["epochs"]), bool(cfg.get("keep_best"))
    doc = regime_calibration(rows, full, keep_best)
    doc["source"] = str(regime)
    doc["protocols"] = protocols
    from adsearch.atomic import write_text_atomic

    write_text_atomic(out / "calibrate_regime.json", json.dumps(doc, indent=1) + "\n")
    per = ", ".join(f"{e['epoch']:g} {_rho(e['median_spearman'])}" for e in doc["epochs"])
    vs = (f"the best validated point of {full:g} epochs (keep_best)" if keep_best
          else f"epoch {full:g}")
    say(f"regime scan cross-check ({', '.join(protocols)}; {len(doc['references'])} "
        f"regularizers x {len(doc['seeds'])} seeds): median Spearman per epoch vs {vs}: {per}")
    say(f"regime scan cross-check: recommended rungs: "
        f"{', '.join(f'{e:g}' for e in doc['recommended_rungs']) or 'none'}; "
        f"{doc['recommendation']}")
    return doc

