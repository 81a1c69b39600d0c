"""``start --scheduler asha --rungs auto --calibration FILE``: rungs from a calibration.

:func:`auto_rungs` (before anything else is checked, no torch) reads the file and turns its
recommendation into the search's ASHA options: the first rung is the calibration's first
recommended epoch, the full budget its full budget, ``--eta`` the user's; ASHA's rungs
``R, R*eta, ...`` below the full budget then all lie in the recommended tail. A calibration
that recommends no rung turns early stopping off, and says so. :func:`check_calibration`
(after the task config is resolved, as ``start`` resolves it) refuses a calibration measured
on another task, task config, full budget or curve field.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from adsearch.calibrate import analysis as A
from adsearch.errors import ConfigError

if TYPE_CHECKING:
    from adsearch.daemon.config import SearchConfig


def auto_rungs(rungs: str | None, calibration: str | None, *, scheduler: str | None,
               min_epochs: float | None, max_epochs: float | None,
               child_epochs: float | None) -> tuple[dict[str, Any], str | None]:
    """The SearchConfig changes for ``--rungs``/``--calibration`` and a line to print.

    Returns ``({}, None)`` without ``--rungs``. Raises ConfigError on a bad combination.
    """
    if rungs is None:
        if calibration is not None:
            raise ConfigError("--calibration FILE is read by --rungs auto; give --scheduler asha "
                              "--rungs auto --calibration FILE")
        return {}, None
    if rungs != "auto":
        raise ConfigError(f"--rungs {rungs!r}: the one value is auto (rungs from --calibration "
                          "FILE); for rungs by hand give --min-epochs, --max-epochs and --eta")
    if calibration is None:
        raise ConfigError("--rungs auto needs --calibration FILE (written by `adsearch calibrate "
                          "... -o FILE`)")
    if scheduler != "asha":
        raise ConfigError("--rungs auto sets the rungs of --scheduler asha; add --scheduler asha")
    if min_epochs is not None:
        raise ConfigError("--rungs auto and --min-epochs exclude each other: the calibration "
                          "picks the first rung; drop one of them")
    path = Path(calibration).expanduser().absolute()
    doc = A.load_calibration(path)
    full = float(doc["full_epochs"])
    if max_epochs is not None and abs(float(max_epochs) - full) > A.EPS:
        raise ConfigError(f"--max-epochs {max_epochs:g} differs from the full budget "
                          f"({full:g} epochs) that {path} was measured at; drop --max-epochs "
                          "or calibrate at that budget (--child-epochs)")
    first = doc.get("first_rung")
    rho = {float(r["epoch"]): r for r in doc.get("epochs", [])}
    summary = {"file": str(path), "task": doc["task"], "task_config": doc["task_config"],
               "full_epochs": full, "metric": doc["metric"], "threshold": doc.get("threshold"),
               "recommended_rungs": list(doc["recommended_rungs"]), "first_rung": first,
               "n_final": doc.get("n_final"), "created_at": doc.get("created_at"),
               "epochs": [{"epoch": r["epoch"], "n": r["n"], "spearman": r["spearman"]}
                          for r in doc.get("epochs", [])]}
    if first is None:
        changes: dict[str, Any] = {"scheduler": None, "min_epochs": None, "max_epochs": None,
                                   "calibration": summary}
        if child_epochs is None:
            changes["child_epochs"] = full
        return changes, (f"no early stopping: calibration {path} recommends none "
                         f"({doc.get('recommendation', '')}); every child trains the full "
                         f"budget of {full:g} epochs")
    row = rho.get(float(first), {})
    return ({"min_epochs": float(first), "max_epochs": full, "calibration": summary},
            f"rungs from calibration {path}: the first at epoch {float(first):g} (Spearman "
            f"{row.get('spearman', float('nan')):+.2f} over {row.get('n', '?')} references "
            f"against the full budget), then x eta up to {full:g}")


def check_calibration(cfg: SearchConfig) -> None:
    """Refuse a search whose resolved task, task config, full budget or rung metric differ
    from those its calibration was measured on (``cfg``: a SearchConfig after
    ``launch.check_task``). A search without a calibration passes."""
    cal = cfg.calibration
    if cal is None:
        return
    where = f"calibration {cal.get('file')}"
    fix = ("calibrate this search's protocol (`adsearch calibrate` with the same --task and "
           "--task-config), or drop --rungs auto")
    if cal.get("task") != cfg.task:
        raise ConfigError(f"{where} was measured on task {cal.get('task')!r}, not {cfg.task!r}; "
                          f"{fix}")
    diff = A.config_differences(dict(cal.get("task_config") or {}), dict(cfg.task_config))
    if diff:
        raise ConfigError(f"{where} was measured on another task config ({'; '.join(diff)}, "
                          f"calibrated vs this search); {fix}")
    full = cfg.full_epochs()
    if full is None or abs(full - float(cal["full_epochs"])) > A.EPS:
        raise ConfigError(f"{where} was measured at a full budget of {cal['full_epochs']:g} "
                          f"epochs, this search trains {full!r}; {fix}")
    if cal.get("metric") != "val_metric":
        raise ConfigError(f"{where} ranks by {cal.get('metric')}, but rungs decide on the "
                          f"task's validation metric (val_metric); {fix}")
