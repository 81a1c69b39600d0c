"""The verify report: per regularizer, mean ± std over seeds and paired differences against
``none`` and against the best baseline (95% t intervals), as a table, JSON and a PNG chart.

Only the **test** metric is compared here; the best baseline is chosen by mean *validation*
reward over the same seeds, never by its test value.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

from adsearch.errors import DataError
from adsearch.verify import plan as P
from adsearch.verify.run import VerifyRun, failure_line, outcomes, test_regularizers, usable
from adsearch.verify.stats import paired_diff, summarize

#: Preferred test metrics, in order; then any other ``test_*`` key, ``test_loss`` last.
METRIC_ORDER = ("test_acc", "test_bleu", "test_ppl", "test_reward")
_LOWER_BETTER = ("ppl", "loss", "error", "err")


def pick_metric(keys: set[str]) -> str | None:
    """The test metric to compare among the metric names ``keys`` (None: no test metric)."""
    for k in METRIC_ORDER:
        if k in keys:
            return k
    rest = sorted(k for k in keys if k.startswith("test_") and k != "test_loss")
    return rest[0] if rest else ("test_loss" if "test_loss" in keys else None)


def lower_is_better(metric: str) -> bool:
    return metric.endswith(_LOWER_BETTER)


#: How the report words a baseline's setting, by its ``source`` (verify.run.select_tuned).
SOURCE_WORDS = {"tuned": "tuned here on validation", "given": "given (--tuned), not tuned here"}


def setting_lines(doc: dict[str, Any]) -> list[str]:
    """One line per baseline: its setting and whether this verify tuned it on validation or
    it was given with ``--tuned`` (``dropout p=0.2: given (--tuned), not tuned here``)."""
    return [f"{v['label']}: {SOURCE_WORDS[v.get('source', 'tuned')]}"
            for v in doc["tuning"].values()]


def build(vr: VerifyRun) -> dict[str, Any]:
    """The report document (the JSON written by ``adsearch verify``; see docs/verify.md)."""
    got = outcomes(vr)
    regs = test_regularizers(vr.plan)
    rows: list[dict[str, Any]] = []
    keys: set[str] = set()
    for reg in regs:
        key = P.trial_key("test", reg.stored)
        runs, failed = [], []
        for s in vr.plan["seeds"]:
            t, r = got.get((key, s), (None, None))
            if t is None:
                continue
            if usable(r):
                runs.append({"seed": s, "trial_id": t.id, "val_reward": float(r.reward),
                             "metrics": dict(r.metrics)})
                keys.update(k for k, v in r.metrics.items() if isinstance(v, (int, float)))
            elif t.state in ("done", "failed", "stale"):
                failed.append({"seed": s, "trial_id": t.id, "state": t.state, "error": t.error})
                vr.failures.append(failure_line(vr, t, reg.label))
        rows.append({**reg.to_dict(), "runs": runs, "failed": failed})
    metric = pick_metric(keys)
    if metric is None:
        raise DataError(f"verify run {vr.name!r}: the task reported no test_* metric, so there "
                        "is nothing to compare on test; give the task a test split (--test-data) "
                        "or make its run_child report test_<metric>")
    for row in rows:
        vals = {r["seed"]: float(r["metrics"][metric]) for r in row["runs"]
                if isinstance(r["metrics"].get(metric), (int, float))
                and math.isfinite(r["metrics"][metric])}
        row["test_by_seed"] = vals
        row["val"] = summarize([r["val_reward"] for r in row["runs"]]).to_dict() if row["runs"] else None
        row["test"] = summarize(list(vals.values())).to_dict() if vals else None
    baselines = [r for r in rows if r["role"] == "baseline" and r["val"]]
    best = max(baselines, key=lambda r: r["val"]["mean"]) if baselines else None
    none = rows[0]
    for row in rows:
        row["vs_none"] = (paired_diff(row["test_by_seed"], none["test_by_seed"]).to_dict()
                          if row is not none else None)
        row["vs_best_baseline"] = (paired_diff(row["test_by_seed"], best["test_by_seed"]).to_dict()
                                   if best is not None and row is not best else None)
    for row in rows:  # JSON keys are strings
        row["test_by_seed"] = {str(k): v for k, v in sorted(row["test_by_seed"].items())}
    # source: "tuned" (this verify's grid) or "given" (--tuned; verify runs before it: tuned)
    tuning = {k: {"best": v["spec"], "label": v["label"], "val_mean": v["val_mean"],
                  "grid": v["grid"], "source": v.get("source", "tuned"),
                  "setting": SOURCE_WORDS[v.get("source", "tuned")]}
              for k, v in (vr.plan.get("tuned") or {}).items()}
    given = any(v["source"] == "given" for v in tuning.values())
    return {
        "search": vr.plan["of"], "verify_search": vr.name, "task": vr.cfg.task,
        "space": vr.cfg.space, "metric": metric, "lower_is_better": lower_is_better(metric),
        "seeds": vr.plan["seeds"], "tune_seeds": vr.plan["tune_seeds"],
        "budget": vr.cfg.child_budget().to_dict(), "test_data": vr.plan.get("test_data"),
        "best_baseline": best["label"] if best else None,
        "selection": ("tuned settings: best mean validation reward over the tuning seeds; "
                      "best baseline: best mean validation reward over the test seeds; "
                      "patterns: the search's top-k by validation reward"
                      + ("; given settings (--tuned): tuned on validation elsewhere, not here"
                         if given else "")),
        "tuning": tuning, "regularizers": rows, "failed_runs": list(vr.failures),
    }


def _ci(d: dict[str, Any] | None) -> str:
    if not d or not d["n"]:
        return "-"
    if d["n"] < 2:
        return f"{d['mean']:+.4g} (n=1)"
    star = " *" if d["significant"] else ""
    return f"{d['mean']:+.4g} [{d['lo']:+.3g}, {d['hi']:+.3g}]{star}"


def _ms(s: dict[str, Any] | None) -> str:
    return "-" if not s else f"{s['mean']:.4g} ± {s['std']:.2g}"


def table(doc: dict[str, Any]) -> Any:
    """A rich Table: one row per regularizer."""
    from rich.table import Table

    m = doc["metric"]
    arrow = "lower is better" if doc["lower_is_better"] else "higher is better"
    t = Table(title=f"verify {doc['search']}: {m} on test over seeds "
                    f"{', '.join(map(str, doc['seeds']))} ({arrow}); * = 95% CI excludes 0")
    t.add_column("regularizer")
    t.add_column("val reward", justify="right")
    t.add_column(m, justify="right")
    t.add_column("Δ vs none [95% CI]", justify="right")
    t.add_column(f"Δ vs {doc['best_baseline'] or 'best baseline'} [95% CI]", justify="right")
    t.add_column("n", justify="right")
    for r in doc["regularizers"]:
        n = f"{len(r['runs'])}" + (f" ({len(r['failed'])} failed)" if r["failed"] else "")
        t.add_row(r["label"], _ms(r["val"]), _ms(r["test"]), _ci(r["vs_none"]),
                  _ci(r["vs_best_baseline"]), n)
    lines = setting_lines(doc)
    if lines:
        t.caption = "baseline settings: " + "; ".join(lines)
        t.caption_justify = "left"
    return t


def plot(doc: dict[str, Any], path: Path) -> None:
    """Two panels: the test metric (mean ± std) and the paired difference against none with
    its 95% interval, one bar per regularizer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in doc["regularizers"] if r["test"]]
    labels = [r["label"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(max(8, 1.3 * len(rows) + 4), 4.2))
    colors = ["#888888" if r["role"] == "none" else "#1f77b4" if r["role"] == "pattern"
              else "#ff7f0e" for r in rows]
    a.bar(range(len(rows)), [r["test"]["mean"] for r in rows],
          yerr=[r["test"]["std"] for r in rows], color=colors, capsize=3)
    a.set_title(f"{doc['metric']} (mean ± std over {len(doc['seeds'])} seeds)")
    diffs = [r["vs_none"] for r in rows]
    means = [d["mean"] if d and d["n"] else 0.0 for d in diffs]
    err = [[m - d["lo"] if d and d["n"] > 1 else 0.0 for m, d in zip(means, diffs, strict=True)],
           [d["hi"] - m if d and d["n"] > 1 else 0.0 for m, d in zip(means, diffs, strict=True)]]
    b.bar(range(len(rows)), means, yerr=err, color=colors, capsize=3)
    b.axhline(0.0, color="black", linewidth=0.8)
    b.set_title("paired difference vs none (95% CI)")
    for ax in (a, b):
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
    fig.suptitle(f"adsearch verify {doc['search']} ({doc['task']})")
    lines = setting_lines(doc)
    note = textwrap.wrap("baseline settings: " + "; ".join(lines),
                         int(fig.get_figwidth() * 16)) if lines else []  # ~16 chars/in at 7 pt
    if note:
        fig.text(0.01, 0.01, "\n".join(note), fontsize=7, ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.035 * len(note), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
