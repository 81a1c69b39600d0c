"""``adsearch verify NAME``: retrain the top-k patterns of a search next to none and the tuned
best of each baseline, over paired seeds, on the test split; table, JSON and PNG.

The runs are a search of their own (``NAME-verify``, same store, ``fixed`` controller) run
by the search daemon in this process, over the search's slots; see docs/verify.md.
Torch loads only when runs start.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from adsearch.atomic import write_text_atomic
from adsearch.cli.options import one

console = Console()


def _progress(label: str) -> Any:
    """An ``on_tick`` for the daemon: a line when runs finish, at most every 5 s (and the last)."""
    last = [-1, 0.0]

    def tick(daemon: Any) -> None:
        total = getattr(daemon, "n_trials", 0)
        done = total - len(getattr(daemon, "active", ()))
        now = time.monotonic()
        if done != last[0] and (now - last[1] >= 5.0 or done == total):
            last[0], last[1] = done, now
            console.print(f"  {label}: {done}/{total} runs done, {len(daemon.children)} running")

    return tick


def _tuned_table(tuned: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title="tuned baselines (selected on validation reward)")
    t.add_column("baseline")
    t.add_column("best setting")
    t.add_column("val reward", justify="right")
    t.add_column("grid (val reward)")
    for kind, v in tuned.items():
        if v.get("source") == "given":
            t.add_row(kind, v["label"], "-", "given (--tuned), not tuned here")
            continue
        grid = ", ".join(f"{g['label'].split(' ', 1)[1]}: "
                         + ("-" if g["val_mean"] is None else f"{g['val_mean']:.3g}")
                         for g in v["grid"])
        t.add_row(kind, v["label"], f"{v['val_mean']:.4g}", grid)
    return t


def _show_failures(lines: list[str], stage: str) -> None:
    """Runs that crashed or were given up are errors to look at, never numbers."""
    if lines:
        err = Console(stderr=True)
        err.print(f"[bold yellow]{len(lines)} {stage} run(s) gave no result (left out):[/]")
        for line in lines:
            err.print(f"  {line}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``verify`` to ``app``."""

    @app.command("verify")
    def verify(
        name: str = typer.Argument(..., help="the search to verify"),  # noqa: B008
        run_dir: str | None = typer.Option(None, "--run-dir", help="its run directory (default: runs/NAME)"),  # noqa: B008
        top_k: int = typer.Option(3, "--top-k", help="retrain the K best distinct patterns"),  # noqa: B008
        seeds: int = typer.Option(3, "--seeds", help="paired seeds 0..N-1 (N >= 2)"),  # noqa: B008
        tune_seeds: int = typer.Option(1, "--tune-seeds", help="tuning runs per grid setting (their mean validation reward picks the setting)"),  # noqa: B008
        baselines: str | None = typer.Option(None, "--baselines", help="comma list to tune (default: all that fit the space: dropout,spatial,dropblock or dropout,variational)"),  # noqa: B008
        tune_only: bool = typer.Option(False, "--tune-only", help="only run the baseline grids and record each one's best setting"),  # noqa: B008
        test_data: str | None = typer.Option(None, "--test-data", help="test split replacing the task's (image tree, token file, translation prefix)"),  # noqa: B008
        child_epochs: float | None = typer.Option(None, "--child-epochs", help="epochs per run (default: the search's child budget)"),  # noqa: B008
        child_steps: int | None = typer.Option(None, "--child-steps", help="optimizer steps per run"),  # noqa: B008
        workers: int | None = typer.Option(None, "--workers", help="CPU runs at once (default: the search's slots)"),  # noqa: B008
        verify_name: str | None = typer.Option(None, "--verify-name", help="name of the verify search (default: NAME-verify)"),  # noqa: B008
        tuned_specs: list[str] = typer.Option([], "--tuned", help="a baseline setting already tuned on validation elsewhere, used instead of tuning its kind here: KIND:RATE (dropout:0.2), dropblock:RATE:BLOCK or a JSON spec; repeatable"),  # noqa: B008
        compare: list[str] = typer.Option([], "--compare", help="also retrain the best pattern of this search (name or run directory; same task and child protocol, same space or its other family: conv-3 next to conv2-3), e.g. a random search; repeatable"),  # noqa: B008
        output: Path | None = typer.Option(None, "-o", "--output", help="report JSON (default: in the verify run directory)"),  # noqa: B008
        png: Path | None = typer.Option(None, "--png", help="chart (default: in the verify run directory)"),  # noqa: B008
        epochs: float | None = typer.Option(None, "--epochs", hidden=True),  # noqa: B008
        steps: int | None = typer.Option(None, "--steps", hidden=True),  # noqa: B008
        json_out: Path | None = typer.Option(None, "--json-out", hidden=True),  # noqa: B008
    ) -> None:
        """Retrain the best patterns next to none and tuned baselines; paired 95% CIs on test."""
        from adsearch.verify import plan as P
        from adsearch.verify import report
        from adsearch.verify.run import (
            VerifyRequest,
            ensure_trials,
            prepare,
            run_pending,
            select_tuned,
            test_items,
            tune_items,
            tuned_here,
        )

        epochs = one("--child-epochs", child_epochs, "--epochs", epochs)
        steps = one("--child-steps", child_steps, "--steps", steps)
        json_out = one("--output", output, "--json-out", json_out)
        kinds = tuple(s.strip() for s in baselines.split(",") if s.strip()) if baselines is not None else None
        req = VerifyRequest(name=name, run_dir=run_dir, top_k=top_k, seeds=seeds,
                            tune_seeds=tune_seeds, baselines=kinds,
                            test_data=test_data, epochs=epochs, steps=steps, workers=workers,
                            tune_only=tune_only, verify_name=verify_name,
                            compare=tuple(compare), tuned=tuple(tuned_specs))
        vr = prepare(req)
        for note in vr.notes:
            console.print(f"[yellow]{note}[/]")
        console.print(f"{'created' if vr.created else 'continuing'} verify search {vr.name!r} "
                      f"in {vr.run.path} (status: `adsearch status {vr.name}`)")
        added = ensure_trials(vr, tune_items(vr.plan))
        given = vr.plan.get("given_tuned") or {}
        console.print(f"stage 1, tuning {', '.join(tuned_here(vr.plan)) or 'nothing'} on "
                      f"validation: {added} run(s) added"
                      + "".join(f"; {k} given with --tuned ({P.describe(s)}), not tuned here"
                                for k, s in given.items()))
        run_pending(vr, _progress("tuning"))
        tuned = select_tuned(vr)
        console.print(_tuned_table(tuned))
        _show_failures(vr.failures, "tuning")
        out_json = json_out or vr.run.path / ("baselines.json" if tune_only else "verify.json")
        if tune_only:
            doc = {"search": name, "verify_search": vr.name, "tune_seeds": vr.plan["tune_seeds"],
                   "selection": "best mean validation reward over the tuning seeds",
                   "tuning": tuned, "failed_runs": vr.failures}
            write_text_atomic(out_json, json.dumps(doc, indent=2) + "\n")
            console.print(f"wrote {out_json}")
            return
        added = ensure_trials(vr, test_items(vr.plan))
        console.print(f"stage 2, retraining on seeds {vr.plan['seeds']}: {added} run(s) added")
        run_pending(vr, _progress("retraining"))
        vr.failures = []
        doc = report.build(vr)
        console.print(report.table(doc))
        _show_failures(vr.failures, "retraining")
        write_text_atomic(out_json, json.dumps(doc, indent=2, default=str) + "\n")
        out_png = png or vr.run.path / "verify.png"
        report.plot(doc, out_png)
        console.print(f"wrote {out_json} and {out_png}")
