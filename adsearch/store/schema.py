"""Schema revisions: create new stores at head, refuse old ones, run Alembic upgrades.

The migrations ship inside the package as ``adsearch.migrations`` (the top-level
``migrations/`` folder of the source tree, mapped by ``pyproject.toml``) and run through
Alembic's ``Config``/``command`` API, never through an ``alembic.ini`` on disk. Opening a
store only reads ``alembic_version`` with one query; Alembic itself is imported only to
create or upgrade a store.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from adsearch.errors import SchemaOutOfDateError, StoreError
from adsearch.store.engine import WRITE_OPTION, db_error_text, display_url, make_engine, parse_url
from adsearch.store.models import SCHEMA_HEAD, SCHEMA_REVISIONS, Base

if TYPE_CHECKING:
    from alembic.config import Config

VERSION_TABLE = "alembic_version"


def migrations_dir() -> Path:
    """Return the folder that holds ``env.py`` and ``versions/`` of the store's migrations.

    Raises:
        StoreError: The migrations are not installed with the package.
    """
    try:
        import adsearch.migrations as pkg

        return Path(pkg.__file__).resolve().parent
    except ModuleNotFoundError:
        source = Path(__file__).resolve().parents[2] / "migrations"  # a source checkout
        if (source / "env.py").is_file():
            return source
    raise StoreError(
        "the store migrations (adsearch.migrations) are missing from this installation: "
        "reinstall adsearch with `pip install --force-reinstall adsearch`"
    )


def alembic_config(connection: Connection | None = None) -> Config:
    """Return an Alembic config whose ``script_location`` is the installed migrations.

    Args:
        connection: A connection for ``env.py`` to run the migrations on (inside the
            caller's transaction).

    Returns:
        The config, ready for ``alembic.command`` functions.
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def read_revision(conn: Connection) -> str | None:
    """Return the revision stamped in the database, or None when it has no version table."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:
        raise StoreError(f"the store has several schema heads {sorted(rows)}; expected one")
    return rows[0] if rows else None


def upgrade_command(url: URL) -> str:
    """Return the exact CLI command that upgrades the store at ``url``."""
    return f"adsearch db upgrade --store {display_url(url)}"


def check_revision(revision: str | None, url: URL, *, has_tables: bool) -> None:
    """Raise unless ``revision`` is this adsearch's head.

    Raises:
        SchemaOutOfDateError: The store is at an older revision.
        StoreError: The store is newer than this adsearch, empty, or not an adsearch store.
    """
    if revision == SCHEMA_HEAD:
        return
    if revision in SCHEMA_REVISIONS:
        raise SchemaOutOfDateError(
            f"schema is at revision {revision}, this adsearch needs {SCHEMA_HEAD}: "
            f"run `{upgrade_command(url)}`"
        )
    if revision is not None:
        raise StoreError(
            f"schema is at revision {revision}, which this adsearch (head {SCHEMA_HEAD}) does "
            f"not know: the store was written by a newer adsearch; upgrade adsearch "
            f"(`pip install -U adsearch`)"
        )
    if has_tables:
        raise StoreError(
            f"{display_url(url)} holds tables but no adsearch schema revision: it is not an "
            "adsearch store; point --store at another database"
        )
    raise StoreError(
        f"the store {display_url(url)} is empty: create it with `{upgrade_command(url)}` "
        "(or start a search)"
    )


def ensure_schema(engine: Engine, url: URL, *, readonly: bool) -> None:
    """Check the store's schema revision; create a new writable store at head.

    Args:
        engine: The store's engine.
        url: Its URL (for messages).
        readonly: Never create anything; an empty store is an error.

    Raises:
        SchemaOutOfDateError: The store is at an older revision.
        StoreError: See :func:`check_revision`, or a database error.
    """
    try:
        with engine.connect() as conn:
            revision = read_revision(conn)
            has_tables = revision is None and bool(inspect(conn).get_table_names())
        if revision is None and not has_tables and not readonly:
            _create_at_head(engine)
            return
        check_revision(revision, url, has_tables=has_tables)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot open the store: {db_error_text(exc, url)}") from exc


def _create_at_head(engine: Engine) -> None:
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            if read_revision(conn) is not None:  # another process created it meanwhile
                return
            Base.metadata.create_all(conn)
            script = ScriptDirectory.from_config(alembic_config())
            MigrationContext.configure(conn).stamp(script, "head")


def current_revision(url: str | URL) -> str | None:
    """Return the schema revision of the store at ``url`` (None if it has none).

    Raises:
        StoreError: A database error.
    """
    url = parse_url(url) if isinstance(url, str) else url
    engine = make_engine(url, readonly=True)  # a missing SQLite file is an error, not created
    try:
        with engine.connect() as conn:
            return read_revision(conn)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the schema revision: {db_error_text(exc, url)}") from exc
    finally:
        engine.dispose()


def upgrade(url: str | URL, revision: str = "head") -> tuple[str | None, str | None]:
    """Run the Alembic migrations of the store at ``url`` up to ``revision``, in one transaction.

    A database that does not exist yet is created by running every migration.

    Args:
        url: The store URL.
        revision: Target revision ("head" or e.g. "0001").

    Returns:
        ``(revision before, revision after)``.

    Raises:
        StoreError: The migration failed (nothing was changed) or the store is not an
            adsearch store.
    """
    from alembic import command
    from alembic.util.exc import CommandError

    url = parse_url(url) if isinstance(url, str) else url
    engine = make_engine(url, readonly=False)
    try:
        with engine.connect() as conn:
            if url.get_backend_name() == "sqlite":
                # Table rebuilds in batch migrations must not cascade; re-checked below.
                conn.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")  # type: ignore[union-attr]
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                before = read_revision(conn)
                if before is None and inspect(conn).get_table_names():
                    check_revision(None, url, has_tables=True)
                command.upgrade(alembic_config(conn), revision)
                if url.get_backend_name() == "sqlite":
                    bad = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if bad:
                        raise StoreError(f"migration left broken foreign keys: {bad[:5]}")
                after = read_revision(conn)
        return before, after
    except CommandError as exc:
        raise StoreError(f"cannot upgrade {display_url(url)} to {revision}: {exc}") from exc
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot upgrade the store: {db_error_text(exc, url)}") from exc
    finally:
        engine.dispose()
