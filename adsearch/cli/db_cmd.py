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
) -> None:
    """Show the store's schema revision and whether it needs an upgrade."""
    from adsearch.store import SCHEMA_HEAD, current_revision
    from adsearch.store.engine import display_url, parse_url
    from adsearch.store.schema import upgrade_command

    url = parse_url(store)
    revision = current_revision(url)
    if revision == SCHEMA_HEAD:
        typer.echo(f"{revision} (head)")
    elif revision is None:
        typer.echo(f"none: {display_url(url)} is not initialised; run `{upgrade_command(url)}`")
    else:
        typer.echo(
            f"{revision} (out of date, this adsearch needs {SCHEMA_HEAD}): "
            f"run `{upgrade_command(url)}`"
        )


def register(app: typer.Typer) -> None:
    """Add the ``db`` command group to ``app``."""
    app.add_typer(db_app, name="db")
