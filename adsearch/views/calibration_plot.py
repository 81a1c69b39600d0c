"""The calibration chart: each reference's validation curve, and Spearman per epoch against
the threshold. matplotlib is the ``plot`` extra: imported here, only when a PNG is asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adsearch.errors import ConfigError


def plot(doc: dict[str, Any], path: str | Path) -> Path:
    """Write the two-panel PNG of a calibration document to ``path`` (atomically)."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'adsearch[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from adsearch.atomic import write_bytes_atomic

    full = float(doc["full_epochs"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.6))
    for ref in doc["references"]:
        pts = [(p["epoch"], p["value"]) for p in ref["values"] if p["value"] is not None]
        if ref.get("final") is not None:
            pts.append((full, ref["final"]))
        if pts:
            a.plot([x for x, _ in pts], [y for _, y in pts], marker=".", label=ref["label"])
    a.set_xlabel("epoch")
    a.set_ylabel(f"validation {doc['metric']}")
    a.set_title(f"{doc['task']}: references at the full budget ({full:g} epochs)")
    a.legend(fontsize=7, ncol=2)
    rows = [r for r in doc["epochs"] if r["spearman"] is not None]
    b.axhline(doc["threshold"], color="#d62728", ls="--", lw=1,
              label=f"threshold {doc['threshold']:g}")
    b.axhline(0.0, color="#888888", lw=0.8)
    b.plot([r["epoch"] for r in rows], [r["spearman"] for r in rows], marker="o",
           label="Spearman vs final")
    b.plot([r["epoch"] for r in rows], [r["kendall"] for r in rows], marker="x", ls=":",
           label="Kendall tau-b vs final")
    for e in doc["recommended_rungs"]:
        b.axvline(e, color="#2ca02c", alpha=0.25, lw=6)
    b.set_ylim(-1.05, 1.05)
    b.set_xlabel("epoch")
    b.set_title(f"rank agreement with the final value (n = {doc['n_final']}); "
                + ("rungs: " + ", ".join(f"{e:g}" for e in doc["recommended_rungs"])
                   if doc["recommended_rungs"] else "no early stopping"), fontsize=9)
    b.legend(fontsize=8)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    out = Path(path).expanduser()
    write_bytes_atomic(out, buf.getvalue())
    return out
