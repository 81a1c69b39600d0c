"""``adsearch train``: the transfer run. Train a target network with an exported pattern file
or a hand-designed baseline over several seeds; print mean ± std; write JSON.

Torch (and the task modules) are imported inside the command function only.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from adsearch.atomic import write_text_atomic
from adsearch.cli.console import make_console
from adsearch.cli.options import one
from adsearch.errors import ConfigError

BASELINES = ("none", "dropout", "spatial", "dropblock", "variational")


def baseline_spec(name: str, drop_prob: float, block_size: int) -> dict[str, Any]:
    """The spec dict of a named baseline (see ``adsearch.ops.make_dropout``)."""
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; use one of {', '.join(BASELINES)}")
    if name == "none":
        return {"kind": "none"}
    if name == "dropblock":
        return {"kind": "dropblock", "drop_prob": drop_prob, "block_size": block_size}
    return {"kind": name, "drop_prob": drop_prob}


def summarize(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean, sample std (None for a single value) and count over seeds of the reward and
    every val_/test_ metric."""
    keys = ["reward"] + sorted({k for r in results for k in r["metrics"] if k.startswith(("val_", "test_"))})
    out: dict[str, dict[str, Any]] = {}
    for k in keys:
        vals = [float(r["reward"] if k == "reward" else r["metrics"][k]) for r in results if k == "reward" or k in r["metrics"]]
        vals = [v for v in vals if math.isfinite(v)]
        if vals:
            out[k] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else None, "n": float(len(vals))}
    return out


def register(app: typer.Typer) -> None:
    """Add ``train`` to ``app``."""

    @app.command("train")
    def train(
        task: str = typer.Option("cifar10", "--task", help="cifar10, imagenet, wikitext2, ptb, translation, or a plug-in package.module:ClassName / entry point (docs/tasks.md)"),  # noqa: B008
        data: Path | None = typer.Option(None, "--data", help="training data; cifar10 defaults to the embedded sample"),  # noqa: B008
        test_data: Path | None = typer.Option(None, "--test-data", help="test split (image tree, token file, or translation prefix)"),  # noqa: B008
        pattern: Path | None = typer.Option(None, "--pattern", help="pattern file written by `adsearch export`"),  # noqa: B008
        baseline: str | None = typer.Option(None, "--baseline", help="dropblock, dropout, spatial, variational or none"),  # noqa: B008
        drop_prob: float = typer.Option(0.1, "--drop-prob", help="drop probability of --baseline"),  # noqa: B008
        block_size: int = typer.Option(7, "--block-size", help="DropBlock block side in px"),  # noqa: B008
        seeds: int = typer.Option(1, "--seeds", min=1, help="independent runs (seeds 0..N-1)"),  # noqa: B008
        child_epochs: float | None = typer.Option(None, "--child-epochs", help="epochs per run (default: the task's)"),  # noqa: B008
        child_steps: int | None = typer.Option(None, "--child-steps", help="cap on optimizer steps per run"),  # noqa: B008
        device: str | None = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: cuda when available, else cpu)"),  # noqa: B008
        threads: int | None = typer.Option(None, "--threads", help="torch CPU threads"),  # noqa: B008
        download: bool = typer.Option(False, "--download", help="let torchvision download CIFAR-10 into --data"),  # noqa: B008
        task_config: str | None = typer.Option(None, "--task-config", help="task config overrides as JSON, as for `start`"),  # noqa: B008
        output: Path | None = typer.Option(None, "-o", "--output", help="write per-seed results and the summary here (JSON)"),  # noqa: B008
        as_json: bool = typer.Option(False, "--json", help="print that JSON document on stdout instead of the table"),  # noqa: B008
        # old spellings, kept working but hidden (docs/cli.md: one name for one thing)
        epochs: float | None = typer.Option(None, "--epochs", hidden=True),  # noqa: B008
        steps: int | None = typer.Option(None, "--steps", hidden=True),  # noqa: B008
        config: Path | None = typer.Option(None, "--config", hidden=True),  # noqa: B008
        json_out: Path | None = typer.Option(None, "--json-out", hidden=True),  # noqa: B008
    ) -> None:
        """Train a target network with a learned pattern or a baseline; report mean ± std."""
        from adsearch.cli.search_cmd import _task_config
        from adsearch.patterns import load_patternset
        from adsearch.tasks import Budget, get_task, load_config
        from adsearch.tasks.registry import data_overrides

        # every check that needs no task module comes first: torch loads only after them
        child_epochs = one("--child-epochs", child_epochs, "--epochs", epochs)
        child_steps = one("--child-steps", child_steps, "--steps", steps)
        output = one("--output", output, "--json-out", json_out)
        console = make_console(stderr=as_json)  # with --json, stdout carries the document only
        if pattern is not None and baseline is not None:
            raise ConfigError("give either --pattern or --baseline, not both")
        if threads is not None and threads < 1:
            raise ConfigError(f"--threads: invalid value {threads}; use an integer >= 1")
        if config is not None:
            if task_config is not None:
                raise ConfigError("give --task-config JSON once (--config FILE is its old spelling)")
            try:
                task_config = config.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"--config {config}: cannot read it ({exc.strerror})") from None
        overrides = _task_config(task_config)
        ps = load_patternset(pattern) if pattern is not None else None
        regularizer: Any = ps
        reg_desc: Any = None
        if ps is not None:
            reg_desc = {"pattern_file": str(pattern), **ps.to_dict()}
        else:
            regularizer = reg_desc = baseline_spec(baseline or "none", drop_prob, block_size)
        budget = Budget(epochs=child_epochs, steps=child_steps)
        import torch

        t = get_task(task)
        overrides.update(data_overrides(
            t, task, data=None if data is None else str(data),
            test_data=None if test_data is None else str(test_data), download=download))
        cfg = load_config(t, task, overrides)
        space = t.space(cfg)
        if ps is not None:
            ps.check_space(space, source=f"pattern file {pattern}")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if threads is not None:
            torch.set_num_threads(threads)
        results: list[dict[str, Any]] = []
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} seeds"), TimeElapsedColumn(), console=console, transient=False) as prog:
            bar = prog.add_task(f"train {task} ({space.name})", total=seeds)
            for seed in range(seeds):
                prog.update(bar, description=f"train {task} seed {seed}")
                res = t.run_child(cfg, regularizer, budget, device, seed)
                results.append({"seed": seed, **res.to_dict()})
                prog.advance(bar)
        summary = summarize(results)
        table = Table(title=f"{task}: {reg_desc.get('kind', 'pattern') if isinstance(reg_desc, dict) and 'kind' in reg_desc else 'pattern ' + str(pattern)} over {seeds} seed(s)")
        table.add_column("metric")
        table.add_column("mean ± std" if seeds > 1 else "value", justify="right")
        if seeds > 1:
            table.add_column("per seed", justify="right")
        for k, s in summary.items():
            per = ", ".join(f"{(r['reward'] if k == 'reward' else r['metrics'].get(k, math.nan)):.4g}" for r in results)
            # one value has no spread to show: its mean alone, never "± 0"
            mean = f"{s['mean']:.4g}" if s["std"] is None else f"{s['mean']:.4g} ± {s['std']:.2g}"
            table.add_row(k, mean, *([per] if seeds > 1 else []))
        diverged = sum(int(r["metrics"].get("diverged", 0)) for r in results)
        console.print(table)
        if diverged:
            console.print(f"[yellow]{diverged} of {seeds} run(s) diverged (reward 0)[/]")
        doc = {"task": task, "config": cfg.to_dict(), "regularizer": reg_desc, "budget": budget.to_dict(), "device": device, "runs": results, "summary": summary}
        if output is not None:
            write_text_atomic(output, json.dumps(doc, indent=2) + "\n")
            console.print(f"wrote {output}")
        if as_json:
            typer.echo(json.dumps(doc))
