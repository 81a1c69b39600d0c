"""``adsearch worker``: serve a search's children on a host without Ray (database queue).

See :mod:`adsearch.daemon.hostworker` and docs/scale-out.md. Parses options, runs the
worker, reports; never imports torch itself (the children do).
"""

from __future__ import annotations

import logging
import sys

import typer

from adsearch.errors import ConfigError


def worker(
    store: str = typer.Option(..., "--store", envvar="ADSEARCH_STORE",
                              help="The search's PostgreSQL store, postgresql+psycopg://user@host/db."),
    search: str = typer.Option(..., "--search", "-s", help="Name of the search to serve."),
    gpus: str = typer.Option(None, "--gpus", help="GPU ids of this host, e.g. 0,2."),
    slots_per_gpu: int = typer.Option(1, "--slots-per-gpu", help="Children at once per GPU."),
    workers: int = typer.Option(None, "--workers", help="CPU mode: children at once on this host."),
    work_dir: str = typer.Option(None, "--work-dir", help="Trial specs, results and logs (default: ./adsearch-worker/SEARCH)."),
    burst: bool = typer.Option(False, "--burst", help="Exit once the queue is empty and nothing runs."),
    inline: bool = typer.Option(False, "--inline", help="Synthetic task only: run children in this process (claim benchmarks)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every claim."),
) -> None:
    """Claim trials of SEARCH from the store's queue and run them here (SIGTERM: warm stop)."""
    from adsearch.daemon.hostworker import HostWorker, run_worker

    if gpus is not None and workers is not None:
        raise ConfigError("--gpus and --workers exclude each other: pick GPU or CPU mode")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers: invalid value {workers}; use an integer >= 1")
    if slots_per_gpu < 1:
        raise ConfigError(f"--slots-per-gpu: invalid value {slots_per_gpu}; use an integer >= 1")
    gpu_list = [g.strip() for g in gpus.split(",") if g.strip()] if gpus is not None else None
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    w = run_worker(HostWorker(store, search, gpus=gpu_list, slots_per_gpu=slots_per_gpu,
                              workers=workers, work_dir=work_dir, burst=burst, inline=inline))
    typer.echo(f"{w.owner}: claimed {len(w.claimed)} trial(s), finished {w.finished}"
               f"{'; stopped: ' + w.stop_reason if w.stop_reason else ''}")
    if w.error:
        raise ConfigError(w.error)


def register(app: typer.Typer) -> None:
    """Add the ``worker`` command to ``app``."""
    app.command("worker")(worker)
