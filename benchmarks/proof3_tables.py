#!/usr/bin/env python3
"""Proof round 3: markdown tables from the verify reports and the transfer run.

Reads ``benchmarks/results/proof3/{cifar,lm}-verify.json`` (written by
benchmarks/proof3_verify.sh) and ``transfer.json`` (benchmarks/proof3_transfer.py), and prints
one table each: mean ± std over the paired seeds on validation and test, and paired test
differences (95% t intervals) of the learned pattern against every other row. Missing files
are skipped with a line that says so.

Usage::

    .venv/bin/python benchmarks/proof3_tables.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adsearch.verify.stats import paired_diff

RES = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "proof3"
LEARNED = "pattern 1"


def _ci(d: Any) -> str:
    star = " *" if d.significant else ""
    return f"{d.mean:+.3g} [{d.lo:+.3g}, {d.hi:+.3g}]{star}"


def verify_table(path: Path, scale: float = 1.0, digits: int = 4) -> str:
    doc = json.loads(path.read_text())
    rows = {r["label"]: r for r in doc["regularizers"]}
    by = {k: {int(s): v * scale for s, v in r["test_by_seed"].items()} for k, r in rows.items()}
    m = doc["metric"]
    out = [f"{doc['metric']} over seeds {', '.join(map(str, doc['seeds']))} "
           f"({'lower' if doc['lower_is_better'] else 'higher'} is better); best baseline on "
           f"validation: {doc['best_baseline']}; * = the 95% CI excludes 0", "",
           f"| regularizer | val reward | {m} | learned minus this row, paired [95% CI] |",
           "| --- | ---: | ---: | ---: |"]
    for k, r in rows.items():
        t = r["test"]
        diff = "-" if k == LEARNED else _ci(paired_diff(by[LEARNED], by[k]))
        out.append(f"| {k} | {r['val']['mean']:.{digits}g} ± {r['val']['std']:.2g} | "
                   f"{t['mean'] * scale:.{digits}g} ± {t['std'] * scale:.2g} | {diff} |")
    return "\n".join(out)


def transfer_table(path: Path) -> str:
    doc = json.loads(path.read_text())
    if "summary" not in doc:
        return f"({path.name}: the run has not finished; {len(doc.get('runs', []))} runs so far)"
    out = [f"BLEU, seeds 0..{len(next(iter(doc['pattern_vs'].values()))['seeds']) - 1}; Dropout tuned on val "
           f"(best p={doc['tuned_dropout']}); * = the 95% CI excludes 0", "",
           "| regularizer | val BLEU (mean) | test BLEU | pattern minus this row, paired [95% CI] |",
           "| --- | ---: | ---: | ---: |"]
    for k, s in doc["summary"].items():
        d = doc["pattern_vs"].get(k)
        diff = "-" if d is None else (f"{d['mean']:+.3g} [{d['lo']:+.3g}, {d['hi']:+.3g}]"
                                      + (" *" if d["significant"] else ""))
        out.append(f"| {k} | {s['val_mean']:.2f} | {s['test']['mean']:.2f} ± {s['test']['std']:.2g} | {diff} |")
    t = doc["target"]
    out += ["", f"Target (pattern >= the better of none and tuned Dropout, {t['bar']:.2f}): "
                f"{t['pattern']:.2f}, {'met' if t['met'] else 'missed'}."]
    return "\n".join(out)


def main() -> None:
    for name, fn in (("cifar-verify.json", lambda p: verify_table(p, 100.0, 3)),
                     ("lm-verify.json", verify_table), ("transfer.json", transfer_table)):
        p = RES / name
        print(f"### {name}\n")
        print(fn(p) if p.is_file() else f"({p} is missing: run its script first)")
        print()


if __name__ == "__main__":
    main()
