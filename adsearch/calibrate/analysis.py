"""From learning curves to recommended rungs, and the calibration document. No torch.

A calibration trains K reference regularizers at the full budget ``E`` (epochs) with a
validation point at every whole epoch ``e < E`` (the point a rung at ``e`` would see: the
tasks evaluate at each rung of their budget) and at the end. For each ``e`` it takes
Spearman's rho (and Kendall's tau-b) of the K values at ``e`` against the K final values,
over the references that have both; a diverged reference has no final value and is left
out, and the count ``n`` says how many remain. With ``keep_best`` in the task config the
final value is the best validated point's (what such a child reports and the search learns
from), not the last epoch's; a rung still sees the value at its own epoch.

**The recommendation** (**ours**): rungs belong where the ranking they see is the full
budget's, and stays so: the recommended rungs are the epochs ``e`` from which on rho is at
least the threshold (0.7 by default) at *every* later measured epoch, the reliable tail of
the curve. An epoch that qualifies alone, with an epoch after it that does not, is not
recommended (said in the notes). No qualifying tail: "no early stopping". Fewer than
:data:`MIN_REFERENCES` references with a final value: no recommendation at all (rho of two
values is +-1 whatever happens).

With K references rho is coarse: it moves in steps of ``12 / (K (K^2 - 1))`` and its
spread with no relation at all is ``1 / sqrt(K - 1)`` (0.38 for K = 8); both are in the
document, so a reader can weigh a value near the threshold.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from adsearch.errors import ConfigError
from adsearch.rank import kendall_tau_b, null_sd, spearman
from adsearch.rungs import EPS  # epochs closer than this are one point

KIND = "adsearch-calibration"  # the document's "kind"
VERSION = 1  # the document's format version
THRESHOLD = 0.7  # default: a rung needs Spearman >= this against the full budget (ours)
MIN_REFERENCES = 3  # fewer references with a final value: no recommendation
#: curve fields a calibration can rank by: ``val_metric`` is the value early stopping sees
#: (the task's validation metric on the rung's scale, up to a monotone map such as LM's
#: 80 / perplexity, which Spearman ignores); ``val_loss`` the validation loss.
METRICS = ("val_metric", "val_loss")
#: task-config keys that change neither training nor any value a rung or the full budget
#: sees, so a calibration still applies when they differ (when to validate, and the test set)
IGNORED_KEYS = frozenset({"curve_points", "eval_every", "test", "test_data", "test_split"})
#: ... except with ``keep_best`` on: then when to validate decides which lengths the full
#: budget's value can be chosen from, so those keys count
COUNTED_WITH_KEEP_BEST = frozenset({"curve_points", "eval_every"})


def check_metric(metric: str) -> str:
    """``metric`` if it is one of :data:`METRICS`; else ConfigError."""
    if metric not in METRICS:
        raise ConfigError(f"--metric: unknown curve field {metric!r}; use {' or '.join(METRICS)}"
                          " (val_metric: the value early stopping sees)")
    return metric


def check_threshold(threshold: float) -> float:
    """``threshold`` if it is a number in (-1, 1]; else ConfigError."""
    if (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
            or not -1 < threshold <= 1):
        raise ConfigError(f"--threshold: invalid value {threshold!r}; give a Spearman "
                          "correlation in (-1, 1], e.g. 0.7")
    return float(threshold)


def rung_epochs(full_epochs: float) -> list[float]:
    """The whole epochs strictly before the full budget: where a calibration validates."""
    return [float(e) for e in range(1, int(math.ceil(full_epochs - EPS)))]


def value_at(curve: Sequence[dict[str, Any]], epoch: float, field: str) -> float | None:
    """``field`` of the first curve point at or after ``epoch`` that has it (finite)."""
    for point in curve:
        e, v = point.get("epoch"), point.get(field)
        if e is None or v is None or float(e) < epoch - EPS:
            continue
        v = float(v)
        return v if math.isfinite(v) else None
    return None


def final_value(curve: Sequence[dict[str, Any]], full_epochs: float, field: str,
                keep_best: bool = False, best_epoch: float | None = None) -> float | None:
    """The full budget's value of ``field``: what the search's reward is made of.

    Without ``keep_best``: the last curve point's, if that point is at the full budget (a
    child that stopped short of it, e.g. diverged, has no final value). With ``keep_best``
    the child reports its best validated point instead, so that point's ``field`` is the
    final value; the curve must still reach the full budget. Which point that is, the child
    says: ``best_epoch`` (its ``metrics["best_epoch"]``, tasks/childloop.py, chosen on the
    reward scale, so a perplexity curve's best is its lowest point). Without it (an older
    record), the first point of the highest ``val_metric`` unless the last one ties it: right
    for accuracy and BLEU, wrong for a lower-is-better ``val_metric`` such as perplexity."""
    points = [p for p in curve if p.get("epoch") is not None and p.get(field) is not None]
    if not points or float(points[-1]["epoch"]) < full_epochs - 1e-3:
        return None
    chosen = points[-1]
    at = ([p for p in points if math.isclose(float(p["epoch"]), float(best_epoch))]
          if keep_best and best_epoch is not None else [])
    if at:
        chosen = at[0]
    elif keep_best:
        scored = [p for p in points if p.get("val_metric") is not None
                  and math.isfinite(float(p["val_metric"]))]
        if scored:
            best = max(scored, key=lambda p: float(p["val_metric"]))  # the first maximum
            last = scored[-1]
            chosen = last if float(last["val_metric"]) >= float(best["val_metric"]) else best
    v = float(chosen[field])
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class EpochAgreement:
    """Agreement of the ranking at one epoch with the final ranking.

    Attributes:
        epoch: the epoch (a whole number below the full budget).
        n: references with a value at this epoch and a final value.
        spearman: Spearman's rho over those ``n`` (None: undefined, e.g. all tied).
        kendall: Kendall's tau-b over the same pairs.
        qualifies: ``spearman >= threshold`` with at least :data:`MIN_REFERENCES` pairs.
    """

    epoch: float
    n: int
    spearman: float | None
    kendall: float | None
    qualifies: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def agreement_table(curves: Sequence[Sequence[dict[str, Any]]], full_epochs: float,
                    field: str, threshold: float, keep_best: bool = False,
                    best_epochs: Sequence[float | None] | None = None) -> list[EpochAgreement]:
    """One :class:`EpochAgreement` per whole epoch before ``full_epochs`` (``keep_best``:
    against the best validated point's value, as :func:`final_value`; ``best_epochs``: each
    curve's child-reported best epoch)."""
    bests = list(best_epochs) if best_epochs is not None else [None] * len(curves)
    finals = [final_value(c, full_epochs, field, keep_best, b)
              for c, b in zip(curves, bests, strict=True)]
    out = []
    for e in rung_epochs(full_epochs):
        pairs = [(v, f) for c, f in zip(curves, finals, strict=True)
                 if f is not None and (v := value_at(c, e, field)) is not None]
        xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
        rho = spearman(xs, ys)
        out.append(EpochAgreement(e, len(pairs), rho, kendall_tau_b(xs, ys),
                                  rho is not None and len(pairs) >= MIN_REFERENCES
                                  and rho >= threshold - 1e-12))
    return out


def recommend(rows: Sequence[EpochAgreement]) -> list[float]:
    """The recommended rung epochs: the qualifying tail (every epoch from the first of them
    to the full budget qualifies); [] for no early stopping."""
    tail: list[float] = []
    for row in reversed(rows):
        if not row.qualifies:
            break
        tail.append(row.epoch)
    return sorted(tail)


def recommendation_text(rungs: Sequence[float], full_epochs: float, threshold: float,
                        n_final: int) -> str:
    """The recommendation in one sentence."""
    if n_final < MIN_REFERENCES:
        return (f"no recommendation: only {n_final} reference(s) reached the full budget; a "
                f"rank correlation needs at least {MIN_REFERENCES}")
    if not rungs:
        return (f"no early stopping: at no epoch before the full budget ({full_epochs:g}) does "
                f"the ranking agree with the final one (Spearman >= {threshold:g}) from there "
                "on; train every child to the full budget")
    shown = ", ".join(f"{e:g}" for e in rungs)
    return (f"rungs at epoch(s) {shown}: from epoch {rungs[0]:g} on the ranking agrees with the "
            f"full budget's (Spearman >= {threshold:g} at every epoch); with ASHA: "
            f"--min-epochs {rungs[0]:g} --max-epochs {full_epochs:g}, or --rungs auto "
            "--calibration FILE")


def notes(rows: Sequence[EpochAgreement], rungs: Sequence[float], n_refs: int,
          n_final: int) -> list[str]:
    """What the table does not say by itself: isolated qualifying epochs, left-out
    references, and how coarse rho is with this many references."""
    out = []
    alone = [r.epoch for r in rows if r.qualifies and (not rungs or r.epoch < rungs[0])]
    if alone:
        out.append(f"epoch(s) {', '.join(f'{e:g}' for e in alone)} reach the threshold but a "
                   "later epoch does not: not recommended")
    if n_final < n_refs:
        out.append(f"{n_refs - n_final} of {n_refs} reference(s) have no final value (diverged "
                   "or stopped short) and are left out")
    if n_final >= 2:
        step = 12 / (n_final * (n_final ** 2 - 1))
        out.append(f"with {n_final} references Spearman moves in steps of {step:.3f}; with no "
                   f"relation at all its spread is {null_sd(n_final):.2f} (1/sqrt(n-1))")
    return out


def best_epoch_of(reference: dict[str, Any]) -> float | None:
    """The best epoch a keep_best child reported (``metrics["best_epoch"]``), or None."""
    v = (reference.get("metrics") or {}).get("best_epoch")
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def build_doc(*, task: str, task_config: dict[str, Any], space: str, full_epochs: float,
              metric: str, threshold: float, seed: int,
              references: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The calibration document (what ``-o FILE`` writes and ``--json`` prints).

    ``references``: one dict per reference with ``label``, ``stored`` (the regularizer as
    a trial stores it), ``status`` (``ok`` or ``bad_pattern``), ``curve`` (the child's
    curve points) and ``seconds``.
    """
    curves = [r.get("curve") or [] for r in references]
    keep_best = bool(task_config.get("keep_best"))
    bests = [best_epoch_of(r) for r in references]
    rows = agreement_table(curves, full_epochs, metric, threshold, keep_best, bests)
    finals = [final_value(c, full_epochs, metric, keep_best, b)
              for c, b in zip(curves, bests, strict=True)]
    n_final = sum(f is not None for f in finals)
    rungs = recommend(rows) if n_final >= MIN_REFERENCES else []
    refs = []
    for r, c, f in zip(references, curves, finals, strict=True):
        points = [{"epoch": e, "value": value_at(c, e, metric)} for e in rung_epochs(full_epochs)]
        refs.append({"label": r["label"], "stored": r["stored"], "status": r["status"],
                     "final": f, "values": points, "seconds": r.get("seconds"),
                     "curve": list(c)})
    return {
        "kind": KIND, "version": VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "task": task, "task_config": dict(task_config), "space": space,
        "full_epochs": float(full_epochs), "metric": metric, "threshold": float(threshold),
        "seed": int(seed), "n_references": len(references), "n_final": n_final,
        "epochs": [r.to_dict() for r in rows],
        "recommended_rungs": rungs,
        "first_rung": rungs[0] if rungs else None,
        "recommendation": recommendation_text(rungs, full_epochs, threshold, n_final),
        "notes": notes(rows, rungs, len(references), n_final),
        "null_sd": null_sd(n_final),
        "references": refs,
    }


def load_calibration(path: str | Path) -> dict[str, Any]:
    """Read a calibration document written by ``adsearch calibrate -o FILE``.

    Raises:
        ConfigError: the file is missing, not JSON, or not a calibration document.
    """
    p = Path(path).expanduser()
    fix = "write one with `adsearch calibrate --task ... -o FILE`"
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--calibration: {p} does not exist; {fix}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--calibration: cannot read {p} ({exc}); {fix}") from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise ConfigError(f"--calibration: {p} is not a calibration (no \"kind\": \"{KIND}\"); "
                          f"{fix}")
    if doc.get("version") != VERSION:
        raise ConfigError(f"--calibration: {p} has format version {doc.get('version')!r}; this "
                          f"adsearch reads version {VERSION}; {fix}")
    for key in ("task", "task_config", "full_epochs", "metric", "recommended_rungs"):
        if key not in doc:
            raise ConfigError(f"--calibration: {p} lacks {key!r}; {fix}")
    return doc


def config_differences(calibrated: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: calibrated vs current`` for each task-config key that differs, ignoring
    :data:`IGNORED_KEYS` (keys that change neither training nor validation values; with
    ``keep_best`` on either side, when to validate counts)."""
    ignored = IGNORED_KEYS
    if calibrated.get("keep_best") or current.get("keep_best"):
        ignored = IGNORED_KEYS - COUNTED_WITH_KEEP_BEST
    keys = sorted((set(calibrated) | set(current)) - ignored)
    return [f"{k}: {calibrated.get(k)!r} vs {current.get(k)!r}" for k in keys
            if calibrated.get(k) != current.get(k)]
