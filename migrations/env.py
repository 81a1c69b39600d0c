"""Alembic environment of the adsearch store.

adsearch calls Alembic with ``config.attributes["connection"]`` set to a connection that is
already inside a write transaction (see :func:`adsearch.store.schema.upgrade`), so every
migration of one upgrade commits or rolls back together. Run by hand, the URL comes from
``-x store=URL`` or ``sqlalchemy.url``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from adsearch.store.engine import make_engine, parse_url
from adsearch.store.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("store") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the store URL: alembic -x store=sqlite:///path/adsearch.db ...")
    return url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode rebuilds tables
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    """Emit the migration SQL without a database (``alembic upgrade --sql``)."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run the migrations on the given connection, or on a fresh one to the store URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(parse_url(_url()), readonly=False)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
