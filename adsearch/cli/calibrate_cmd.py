"""``adsearch calibrate``: check where early-stopping rungs can rank regularizers.

Trains reference regularizers at the full budget with a validation point at every epoch,
prints the Spearman correlation of each epoch's values with the final ones and recommends
rungs (or no early stopping). The library is :mod:`adsearch.calibrate`; torch loads only
when the runs start. See docs/cli.md ("calibrate") and docs/daemon.md ("Early stopping").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from adsearch.atomic import write_text_atomic


def table(doc: dict[str, Any]) -> Any:
    """The per-epoch agreement as a Rich table."""
    from rich.table import Table

    t = Table(title=f"rank agreement of each epoch with the final {doc['metric']} "
                    f"({doc['n_final']} of {doc['n_references']} references reached "
                    f"{doc['full_epochs']:g} epochs)", title_justify="left")
    for col in ("epoch", "n", "Spearman", "Kendall tau-b", f">= {doc['threshold']:g}", "rung"):
        t.add_column(col, justify="right")
    rungs = set(doc["recommended_rungs"])
    for r in doc["epochs"]:
        rho, tau = r["spearman"], r["kendall"]
        t.add_row(f"{r['epoch']:g}", str(r["n"]), "-" if rho is None else f"{rho:+.2f}",
                  "-" if tau is None else f"{tau:+.2f}", "yes" if r["qualifies"] else "",
                  "rung" if r["epoch"] in rungs else "")
    return t


def references_table(doc: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title="references (validation value at the full budget)", title_justify="left")
    for col in ("reference", f"final {doc['metric']}", "seconds"):
        t.add_column(col)
    for r in doc["references"]:
        final = "-" if r["final"] is None else f"{r['final']:.4g}"
        if r["status"] != "ok":
            final += f" ({r['status']})"
        t.add_row(r["label"], final, "-" if r["seconds"] is None else f"{r['seconds']:.0f}")
    return t


def register(app: typer.Typer) -> None:
    """Add ``calibrate`` to ``app``."""

    @app.command("calibrate")
    def calibrate(
        task: str = typer.Option(..., "--task", help="Task, as for `start`: cifar10, wikitext2, ..., synthetic, or a plug-in that supports early stopping."),  # noqa: B008
        task_config: str | None = typer.Option(None, "--task-config", help="Task config overrides as JSON (the search's, as `start` takes them)."),  # noqa: B008
        data: str | None = typer.Option(None, "--data", help="Data path (default: the task's own)."),  # noqa: B008
        space: str = typer.Option("", "--space", help="Search space (default: the task's)."),  # noqa: B008
        child_epochs: float | None = typer.Option(None, "--child-epochs", help="The full budget in epochs (default: the task config's epochs)."),  # noqa: B008
        reference: list[str] = typer.Option([], "--reference", help="A reference regularizer: none, KIND:RATE (dropout:0.1), dropblock:RATE:BLOCK or a JSON spec; repeatable. Default: none and the tuned-baseline grid."),  # noqa: B008
        pattern: list[str] = typer.Option([], "--pattern", help="A pattern file (adsearch export) as a reference; repeatable."),  # noqa: B008
        seed: int = typer.Option(0, "--seed", help="Seed of every reference run (same init and data order)."),  # noqa: B008
        workers: int | None = typer.Option(None, "--workers", help="CPU mode: runs at once (threads split between them)."),  # noqa: B008
        gpus: str | None = typer.Option(None, "--gpus", help="GPU ids, e.g. 0,2 (default: CUDA_VISIBLE_DEVICES or all)."),  # noqa: B008
        threshold: float = typer.Option(0.7, "--threshold", help="Spearman an epoch needs, from there on, to be a recommended rung."),  # noqa: B008
        metric: str = typer.Option("val_metric", "--metric", help="Curve field to rank by: val_metric (what early stopping sees) or val_loss."),  # noqa: B008
        work_dir: str | None = typer.Option(None, "--work-dir", help="Where finished runs are kept (default: ./calibrations/TASK-HASH); a rerun skips them."),  # noqa: B008
        child_timeout: float | None = typer.Option(None, "--child-timeout", help="Kill a run after this many seconds."),  # noqa: B008
        output: Path | None = typer.Option(None, "-o", "--output", help="Write the calibration JSON here (for `start --rungs auto --calibration FILE`)."),  # noqa: B008
        as_json: bool = typer.Option(False, "--json", help="Print the calibration JSON on stdout (progress goes to stderr)."),  # noqa: B008
        plot: Path | None = typer.Option(None, "--plot", help="Write a PNG of the curves and the Spearman per epoch (needs the plot extra)."),  # noqa: B008
    ) -> None:
        """Train reference regularizers at the full budget, validating every epoch; print the
        Spearman of each epoch against the final value and recommend rungs."""
        from adsearch.calibrate.runner import CalibrateRequest, prepare
        from adsearch.calibrate.runner import calibrate as run_calibration
        from adsearch.cli.search_cmd import _gpus, _task_config

        console = Console(stderr=as_json, emoji=False)
        req = CalibrateRequest(
            task=task, task_config=_task_config(task_config), data=data, space=space,
            child_epochs=child_epochs, references=tuple(reference), patterns=tuple(pattern),
            seed=seed, workers=workers, gpus=_gpus(gpus), threshold=threshold, metric=metric,
            work_dir=work_dir, child_timeout=child_timeout)
        if plot is not None:
            try:
                import matplotlib  # noqa: F401 - refuse before hours of training, not after
            except ImportError:
                from adsearch.errors import ConfigError

                raise ConfigError("--plot needs matplotlib: pip install 'adsearch[plot]'") from None
        plan = prepare(req)
        console.print(f"calibrating task {plan.task} ({plan.space}) at {plan.full_epochs:g} "
                      f"epochs: {len(plan.references)} reference(s): "
                      + ", ".join(r.label for r in plan.references), highlight=False,
                      soft_wrap=True)

        def say(msg: str) -> None:
            console.print(msg, highlight=False, soft_wrap=True, markup=False)

        doc = run_calibration(plan, say)
        text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
        write_text_atomic(plan.work_dir / "calibration.json", text)
        if output is not None:
            write_text_atomic(output.expanduser(), text)
        if plot is not None:
            from adsearch.views.calibration_plot import plot as draw

            draw(doc, plot)
        if as_json:
            typer.echo(text, nl=False)
            return
        console.print(references_table(doc))
        console.print(table(doc))
        console.print(f"recommendation: {doc['recommendation']}", highlight=False,
                      soft_wrap=True)
        for note in doc["notes"]:
            console.print(f"note: {note}", highlight=False, soft_wrap=True)
        wrote = [str(p) for p in (output, plot) if p is not None]
        console.print(f"wrote {', '.join(wrote + [str(plan.work_dir / 'calibration.json')])}",
                      highlight=False, soft_wrap=True)
