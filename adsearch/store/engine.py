"""Engines for the store: URL checks and the per-connection SQLite settings.

Everything SQLite-specific in the store lives here, in connection listeners:

- every connection sets ``PRAGMA busy_timeout`` (30 s) and ``foreign_keys=ON``;
- writable connections put the database in WAL mode (readers never block the writer and the
  writer never blocks readers) with ``synchronous=NORMAL`` (an application crash loses
  nothing; a power cut may roll back the last commits but never corrupts the file);
- read-only stores open the file with the URI ``mode=ro`` and ``PRAGMA query_only``, and
  read a cleanly closed database on read-only media (no ``-shm`` file, none can be made)
  with ``immutable=1``;
- pysqlite's own transaction handling is switched off and the store emits ``BEGIN`` itself:
  write sessions begin with ``BEGIN IMMEDIATE``, which takes the write lock up front, so
  concurrent writers queue on the busy timeout instead of failing with "database is locked"
  when a deferred read transaction tries to upgrade to a write.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from adsearch.errors import StoreError

BUSY_TIMEOUT_S = 30.0
"""How long a SQLite connection waits for a lock before giving up (seconds)."""

PG_POOL_SIZE = 2
"""PostgreSQL connections a store keeps open per process (``$ADSEARCH_PG_POOL_SIZE``).

Every daemon, ``adsearch worker`` and command is one process with one store, and uses one
connection at a time (two while a second thread reads): with the default pool and
``PG_MAX_OVERFLOW``, a process never holds more than 3 connections, so a server with
``max_connections = 100`` serves about 30 processes. See docs/scale-out.md."""

PG_MAX_OVERFLOW = 1
"""Extra PostgreSQL connections a burst may open beyond the pool (``$ADSEARCH_PG_MAX_OVERFLOW``)."""

WRITE_OPTION = "adsearch_write"
"""Execution option that marks a connection as used for a write transaction."""


def parse_url(url: str) -> URL:
    """Parse a store URL.

    Args:
        url: ``sqlite:///path/adsearch.db`` or ``postgresql+psycopg://user@host/db``.

    Returns:
        The parsed SQLAlchemy URL.

    Raises:
        StoreError: The URL cannot be parsed or names a backend the store does not support.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"invalid store URL {url!r}: use sqlite:///path/adsearch.db or "
            "postgresql+psycopg://user@host/dbname"
        ) from exc
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(
            f"unsupported store backend {parsed.get_backend_name()!r} in {display_url(parsed)}: "
            "use sqlite:///path/adsearch.db or postgresql+psycopg://user@host/dbname"
        )
    return parsed


def display_url(url: URL | str) -> str:
    """Render a URL for messages, with any password hidden."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.render_as_string(hide_password=True)


def db_error_text(exc: BaseException, url: URL | str) -> str:
    """One line for a database error: the driver's own message (no SQL, no SQLAlchemy
    background link) plus what to do for the cases a user can meet (a corrupt file, a full
    disk, a file that cannot be opened)."""
    orig = getattr(exc, "orig", None)
    raw = str(orig if orig is not None else exc).strip()
    text = raw.splitlines()[0] if raw else type(exc).__name__
    low = text.lower()
    parsed = make_url(url) if isinstance(url, str) else url
    path = sqlite_path(parsed) if parsed.get_backend_name() == "sqlite" else None
    where = path or display_url(parsed)
    if "malformed" in low or "not a database" in low:
        return (f"{where} is corrupt ({text}): restore it from a backup; "
                f"`sqlite3 {where} .recover` salvages what is still readable")
    if "disk is full" in low or "no space left" in low:
        return f"no space left on device for {where} ({text}): free space, then resume"
    if "unable to open database file" in low:
        return (f"cannot open {where} ({text}): check that the file and its directory exist "
                "and are readable")
    return f"{display_url(parsed)}: {text}"


def sqlite_path(url: URL) -> str | None:
    """Return the file path of a SQLite URL, or None for an in-memory database."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return database


def make_engine(url: URL, *, readonly: bool) -> Engine:
    """Create the engine of a store.

    Args:
        url: A URL accepted by :func:`parse_url`.
        readonly: Open the database read-only (SQLite: ``mode=ro``; PostgreSQL: read-only
            transactions).

    Returns:
        An engine with the store's connection settings.

    Raises:
        StoreError: A read-only open of a SQLite file that does not exist, or a driver that
            is not installed.
    """
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, readonly=readonly)
    try:
        engine = create_engine(
            # connect_timeout: a server that accepts but never answers (mid-restart, a
            # firewall) fails the attempt, which store/retry.py then retries, instead of
            # hanging the daemon
            url, pool_pre_ping=True, pool_recycle=1800, connect_args={"connect_timeout": 10},
            pool_size=_env_int("ADSEARCH_PG_POOL_SIZE", PG_POOL_SIZE, 1),
            max_overflow=_env_int("ADSEARCH_PG_MAX_OVERFLOW", PG_MAX_OVERFLOW, 0),
        )
    except ModuleNotFoundError as exc:
        raise StoreError(
            f"the driver for {display_url(url)} is not installed ({exc.name}): run "
            "`pip install 'adsearch[postgres]'`"
        ) from exc
    if readonly:
        engine = engine.execution_options(postgresql_readonly=True)
    return engine


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise StoreError(f"${name}={raw!r}: use an integer >= {minimum}")
    return value


def _sqlite_engine(url: URL, *, readonly: bool) -> Engine:
    path = sqlite_path(url)
    kwargs: dict[str, Any] = {}
    if path is None:
        if readonly:
            raise StoreError(
                f"an in-memory store ({display_url(url)}) cannot be opened read-only: "
                "use a file, e.g. sqlite:///runs/adsearch.db"
            )
        kwargs["poolclass"] = StaticPool
        kwargs["connect_args"] = {"check_same_thread": False}
    else:
        if readonly:
            if not os.path.exists(path):
                raise StoreError(
                    f"no store at {path}: create one with "
                    f"`adsearch db upgrade --store {display_url(url)}` (or start a search)"
                )
            kwargs["creator"] = _readonly_connect(path)
        else:
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, exist_ok=True)
            kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}
    engine = create_engine(url, **kwargs)
    _install_sqlite_listeners(engine, readonly=readonly, wal=path is not None)
    return engine


def _readonly_connect(path: str) -> Any:
    """A connection factory that reads ``path`` without writing anything.

    ``mode=ro`` first. A database in WAL mode also needs its ``-shm`` file; on read-only
    media (a read-only mount, an archive copy) where that file is missing SQLite cannot
    create it and fails with "unable to open database file". Then, if no un-checkpointed
    ``-wal`` content exists (every commit is in the main file, as after a clean shutdown),
    the file is opened ``immutable=1``: SQLite reads it as a plain file, with no lock and no
    shared memory. A non-empty ``-wal`` without ``-shm`` on read-only media cannot be read
    exactly, and is refused with the way out.
    """
    base = Path(path).resolve().as_uri()

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(base + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                               check_same_thread=False)
        try:
            conn.execute("PRAGMA schema_version").fetchone()  # opens the WAL index now
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            if "unable to open database file" not in str(exc):
                raise
        wal = Path(path + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise sqlite3.OperationalError(
                f"unable to open database file: {path} is on read-only media with "
                f"un-checkpointed changes in {wal.name} but no {Path(path).name}-shm; copy "
                "the directory to writable storage to read it"
            )
        return sqlite3.connect(base + "?immutable=1", uri=True, check_same_thread=False)

    return connect


def _install_sqlite_listeners(engine: Engine, *, readonly: bool, wal: bool) -> None:
    busy_ms = int(BUSY_TIMEOUT_S * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the "begin" listener emits BEGIN itself
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cur.execute("PRAGMA foreign_keys = ON")
            if readonly:
                cur.execute("PRAGMA query_only = ON")
            elif wal:
                cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA synchronous = NORMAL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION, False) and not readonly
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
