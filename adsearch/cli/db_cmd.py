"""``adsearch db``: manage the store's schema (Alembic migrations shipped with adsearch).

The store URL comes from ``--store`` or, when that is absent, from the ``ADSEARCH_STORE``
environment variable; one of the two is required.
"""

from __future__ import annotations

import typer

STORE_HELP = (
    "Store URL, e.g. sqlite:///runs/adsearch.db or postgresql+psycopg://user@host/db "
    "(default: $ADSEARCH_STORE)."
)

db_app = typer.Typer(
    name="db",
    help="Manage the store's schema: create it, show its revision, upgrade it.",
    no_args_is_help=True,
)


@db_app.command("upgrade")
def upgrade(
    store: str = typer.Option(..., "--store", envvar="ADSEARCH_STORE", help=STORE_HELP),
    revision: str = typer.Option(
        "head", "--revision", help="Target revision (default: the newest this adsearch knows)."
    ),
) -> None:
    """Create the store or upgrade its schema, in one transaction."""
    from adsearch.store import upgrade as run_upgrade
    from adsearch.store.engine import display_url, parse_url

    url = parse_url(store)
    before, after = run_upgrade(url, revision)
    where = display_url(url)
    if before == after:
        typer.echo(f"{where}: already at revision {after}")
    elif before is None:
        typer.echo(f"{where}: created at revision {after}")
    else:
        typer.echo(f"{where}: upgraded from revision {before} to {after}")


@db_app.command("current")
def current(
    store: str = typer.Option(..., "--store", envvar="ADSEARCH_STORE", help=STORE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (shape: docs/cli.md)."),
) -> None:
    """Show the store's schema revision and whether it needs an upgrade."""
    from adsearch.store import SCHEMA_HEAD, current_revision
    from adsearch.store.engine import display_url, parse_url
    from adsearch.store.schema import upgrade_command

    url = parse_url(store)
    revision = current_revision(url)
    if as_json:
        import json

        typer.echo(json.dumps({"store": display_url(url), "revision": revision, "head": SCHEMA_HEAD,
                               "up_to_date": revision == SCHEMA_HEAD,
                               "upgrade": None if revision == SCHEMA_HEAD else upgrade_command(url)}))
        return
    if revision == SCHEMA_HEAD:
        typer.echo(f"{revision} (head)")
    elif revision is None:
        typer.echo(f"none: {display_url(url)} is not initialised; run `{upgrade_command(url)}`")
    else:
        typer.echo(
            f"{revision} (out of date, this adsearch needs {SCHEMA_HEAD}): "
            f"run `{upgrade_command(url)}`"
        )


COPY_SEARCH = typer.Option(None, "--search", "-s", help="Search to copy (repeat; default: all).")


@db_app.command("copy")
def copy(
    src: str = typer.Argument(..., help="Source store URL, e.g. sqlite:///runs/NAME/adsearch.db."),
    dst: str = typer.Argument(..., help="Destination store URL, e.g. postgresql+psycopg://user@host/db."),
    search: list[str] = COPY_SEARCH,
    run_dir: str = typer.Option(None, "--run-dir", help="Point this run directory at DST afterwards (to resume there; one search)."),
    remap_ids: bool = typer.Option(False, "--remap-ids", help="Give new ids when the destination has them taken (read-only copy)."),
    force: bool = typer.Option(False, "--force", help="Copy a search whose state is still running (its daemon is dead)."),
) -> None:
    """Copy searches with every trial, result, checkpoint and event to another store, in one
    transaction (refused if DST already has the search)."""
    from adsearch.errors import ConfigError
    from adsearch.store.copy import copy_searches
    from adsearch.store.engine import display_url

    run = None
    if run_dir is not None:
        from adsearch.daemon.rundir import RunDir

        if not search or len(search) != 1:
            raise ConfigError("--run-dir: name the one search it belongs to with --search NAME")
        if remap_ids:
            raise ConfigError("--run-dir and --remap-ids exclude each other: a remapped copy "
                              "cannot be resumed (its checkpoint files keep the old ids); drop "
                              "--run-dir and read the copy with `adsearch status --store DST "
                              "--search NAME`, or copy into a new database to resume there")
        run = RunDir(run_dir)
        ident = run.identity()
        if ident is None:
            raise ConfigError(f"--run-dir: {run_dir} holds no search.json; give the run "
                              "directory of the search")
        run.check_belongs_to(search[0])
        if run.daemon_pid() is not None:
            raise ConfigError(f"--run-dir: the daemon of {search[0]!r} is running (pid "
                              f"{run.daemon_pid()}); stop it first with `adsearch stop {search[0]}`")
    reports = copy_searches(src, dst, search or None, remap_ids=remap_ids, force=force)
    for r in reports:
        rows = ", ".join(f"{n} {t}" for t, n in r.rows.items() if t != "searches")
        ids = (f"ids remapped (search {r.source_id} -> {r.dest_id}): a read-only copy, read "
               f"it with `adsearch status --store {display_url(dst)} --search {r.search}`"
               if r.remapped else "ids preserved")
        typer.echo(f"{r.search}: copied to {display_url(dst)}: {rows}; {ids}")
    if run is not None:
        run.claim(search[0], dst)
        typer.echo(f"{run.path}: now uses {display_url(dst)}; continue with "
                   f"`adsearch resume {search[0]} --run-dir {run.path}`")


def register(app: typer.Typer) -> None:
    """Add the ``db`` command group to ``app``."""
    app.add_typer(db_app, name="db")
