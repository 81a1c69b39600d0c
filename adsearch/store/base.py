"""Core of :class:`~adsearch.store.Store`: opening, closing and the one session helper."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from adsearch.errors import AdsearchError, StoreError, StoreUnavailable
from adsearch.store.engine import WRITE_OPTION, db_error_text, display_url, make_engine, parse_url
from adsearch.store.models import SearchModel
from adsearch.store.schema import ensure_schema

_S = TypeVar("_S", bound="StoreCore")


class StoreCore:
    """Opening, closing and the session helper shared by every store method.

    Args:
        url: ``sqlite:///path/adsearch.db`` or ``postgresql+psycopg://user@host/dbname``.
        readonly: Open for reading only.

    Raises:
        SchemaOutOfDateError: The database is at an older schema revision.
        StoreError: Bad URL, missing database (read-only), newer schema, database error.
    """

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        self._url = parse_url(url)
        self._readonly = readonly
        self._engine = make_engine(self._url, readonly=readonly)
        try:
            ensure_schema(self._engine, self._url, readonly=readonly)
        except BaseException:
            self._engine.dispose()
            raise
        self._read = sessionmaker(bind=self._engine, expire_on_commit=False)
        self._write = sessionmaker(
            bind=self._engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False
        )

    @property
    def url(self) -> str:
        """The store URL, password hidden."""
        return display_url(self._url)

    @property
    def readonly(self) -> bool:
        """Whether the store was opened read-only."""
        return self._readonly

    def close(self) -> None:
        """Close every pooled connection. The store cannot be used afterwards."""
        self._engine.dispose()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r}, readonly={self._readonly})"

    @contextmanager
    def _session(self, *, write: bool = True) -> Iterator[Session]:
        """Run one transaction: commit on success, roll back and wrap errors on failure.

        Raises:
            StoreError: A write on a read-only store, or any database error.
        """
        if write and self._readonly:
            raise StoreError(
                f"the store {self.url} is open read-only: open it with Store(url) to write"
            )
        session = (self._write if write else self._read)()
        try:
            yield session
            session.commit()
        except AdsearchError:
            session.rollback()
            raise
        except SQLAlchemyError as exc:
            try:
                session.rollback()
            except SQLAlchemyError:  # the connection is gone: nothing to roll back
                pass
            if _disconnected(exc, self._url.get_backend_name()):
                raise StoreUnavailable(f"store {db_error_text(exc, self.url)}") from exc
            raise StoreError(f"store {db_error_text(exc, self.url)}") from exc
        finally:
            session.close()

    @staticmethod
    def _search_row(s: Session, search_id: int) -> SearchModel:
        row = s.get(SearchModel, search_id)
        if row is None:
            raise StoreError(f"no search with id {search_id}")
        return row


def _disconnected(exc: SQLAlchemyError, backend: str) -> bool:
    """Whether ``exc`` means the connection was lost (worth a retry on a new one).

    SQLAlchemy flags errors it recognises as disconnects (``connection_invalidated``); on
    PostgreSQL every ``OperationalError`` of psycopg is about the connection or the server
    (refused while it restarts, terminated by an administrator, server closed the
    connection), so those count too. SQLite's OperationalError (a locked or corrupt file)
    never does."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if backend != "postgresql":
        return False
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the postgres extra is installed with PostgreSQL
        return False
    return isinstance(getattr(exc, "orig", None), psycopg.OperationalError)
