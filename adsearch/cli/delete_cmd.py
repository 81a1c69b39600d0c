"""``adsearch delete NAME``: remove a search for good (its run directory and its store rows).

Asks for confirmation unless ``--yes``; refuses while the search's daemon runs. A search whose
store is the SQLite file in its own run directory goes with that directory; one kept in another
store (``start --store``, e.g. PostgreSQL) has its rows deleted there first, in one transaction.
No torch.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from adsearch.errors import ConfigError


def delete(
    name: str = typer.Argument(..., help="Search name."),
    run_dir: str = typer.Option(None, "--run-dir", help="Run directory (default: ./runs/NAME, or $ADSEARCH_RUNS/NAME)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a search: its trials, results, checkpoints, events and run directory."""
    from adsearch.daemon.launch import find_run_dir
    from adsearch.store import Store
    from adsearch.store.engine import display_url

    run = find_run_dir(name, run_dir)
    run.check_belongs_to(name)
    pid = run.daemon_pid()
    if pid is not None:
        raise ConfigError(f"search {name!r} has a running daemon (pid {pid}); stop it first with "
                          f"`adsearch stop {name}`, then delete it")
    url = run.store_url()
    own_store = url == run.default_store_url
    what = f"{run.path}" + ("" if own_store else f" and its rows in {display_url(url)}")
    if not yes and not typer.confirm(f"delete search {name!r} ({what})? This cannot be undone"):
        raise ConfigError(f"not deleted: {name!r} is unchanged (pass --yes to skip the question)")
    if not own_store:
        with Store(url) as store:
            store.delete_search(store.get_search(name).id)
    shutil.rmtree(Path(run.path))
    typer.echo(f"deleted search {name!r} ({what})")


def register(app: typer.Typer) -> None:
    """Add ``delete`` to ``app``."""
    app.command("delete")(delete)
