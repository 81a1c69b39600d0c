"""The trial store: searches, trials, results, controller checkpoints and an event log.

Promises every backend keeps (SQLite and PostgreSQL, through SQLAlchemy 2):

- Callers get frozen records (:mod:`adsearch.store.records`), never ORM rows.
- Every read and write runs in :meth:`Store._session`, which commits, rolls back on any
  error and turns SQLAlchemy errors into :class:`~adsearch.errors.StoreError`. A method is
  one transaction: it happens completely or not at all.
- State changes can be compare-and-set (``expect_state``), so two processes never both move
  the same trial; :meth:`Store.finish_trial` writes the result and the terminal state
  together and refuses to finish a trial twice.
- A read-only store (``readonly=True``) never writes and, on SQLite, never blocks the
  writer (WAL). A writable open of a new database creates it at the schema head; an older
  schema raises :class:`~adsearch.errors.SchemaOutOfDateError` with the upgrade command.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from adsearch.errors import StoreError
from adsearch.store import convert
from adsearch.store.leases import LeaseMethods
from adsearch.store.models import (
    CheckpointModel,
    CheckpointTrialModel,
    EventModel,
    ResultModel,
    SearchModel,
)
from adsearch.store.records import (
    SEARCH_STATES,
    CheckpointRecord,
    EventRecord,
    SearchRecord,
    utcnow,
)
from adsearch.store.retry import retrying_methods
from adsearch.store.rungs import RungMethods
from adsearch.store.trials import TrialMethods, check_state


@retrying_methods  # a lost connection costs a retry, not a crash (store/retry.py)
class Store(TrialMethods, RungMethods, LeaseMethods):
    """Access to one adsearch database.

    Args:
        url: ``sqlite:///path/adsearch.db`` or ``postgresql+psycopg://user@host/dbname``.
        readonly: Open for reading only (status, list, export): never creates, never
            writes, never blocks the daemon.

    Raises:
        SchemaOutOfDateError: The database is at an older schema revision; the message
            gives the ``adsearch db upgrade --store URL`` command.
        StoreError: Bad URL, a read-only open of a missing or empty database, a database
            written by a newer adsearch, or a database error.
    """

    # -- searches ---------------------------------------------------------------------

    def create_search(self, name: str, config: dict[str, Any]) -> SearchRecord:
        """Create a search in state ``created``.

        Args:
            name: Unique, non-empty name.
            config: JSON-able search configuration.

        Returns:
            The new search.

        Raises:
            StoreError: The name is empty or taken.
        """
        if not name or not name.strip():
            raise StoreError("a search name must not be empty")
        taken = StoreError(f"a search named {name!r} already exists: pick another name")
        try:
            with self._session() as s:
                if s.scalar(select(SearchModel.id).where(SearchModel.name == name)) is not None:
                    raise taken
                now = utcnow()
                row = SearchModel(
                    name=name, config=dict(config), state="created", created_at=now, updated_at=now
                )
                s.add(row)
                s.flush()
                return convert.search_record(row)
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):  # lost a race for the name
                raise taken from exc
            raise

    def get_search(self, name: str) -> SearchRecord:
        """Return the search called ``name``.

        Raises:
            StoreError: No such search; the message lists the known ones.
        """
        with self._session(write=False) as s:
            row = s.scalar(select(SearchModel).where(SearchModel.name == name))
            if row is None:
                known = s.scalars(select(SearchModel.name).order_by(SearchModel.id)).all()
                listed = ", ".join(known) if known else "none yet"
                raise StoreError(f"no search named {name!r} in {self.url} (known: {listed})")
            return convert.search_record(row)

    def get_search_by_id(self, search_id: int) -> SearchRecord:
        """Return the search with id ``search_id``.

        Raises:
            StoreError: No such search.
        """
        with self._session(write=False) as s:
            return convert.search_record(self._search_row(s, search_id))

    def list_searches(self) -> list[SearchRecord]:
        """Return every search, oldest first."""
        with self._session(write=False) as s:
            rows = s.scalars(select(SearchModel).order_by(SearchModel.id)).all()
            return [convert.search_record(r) for r in rows]

    def set_search_state(self, search_id: int, state: str) -> SearchRecord:
        """Set a search's state (one of ``SEARCH_STATES``) and return the search.

        Raises:
            StoreError: Unknown search or state.
        """
        check_state(state, SEARCH_STATES, "search")
        with self._session() as s:
            row = self._search_row(s, search_id)
            row.state = state
            row.updated_at = utcnow()
            s.flush()
            return convert.search_record(row)

    def delete_search(self, search_id: int) -> dict[str, int]:
        """Delete a search and every row that belongs to it, in one transaction.

        Rows go children first (SQLite enforces no ``ON DELETE CASCADE`` without its
        foreign-key pragma). Returns the number of rows deleted per table.

        Raises:
            StoreError: No such search.
        """
        from adsearch.store.models import (
            DaemonLeaseModel,
            QueueEntryModel,
            ResultModel,
            TrialModel,
        )

        with self._session() as s:
            self._search_row(s, search_id)
            ckpts = select(CheckpointModel.id).where(CheckpointModel.search_id == search_id)
            statements: list[tuple[str, Any]] = [
                ("checkpoint_trials", delete(CheckpointTrialModel).where(
                    CheckpointTrialModel.checkpoint_id.in_(ckpts))),
                ("queue_entries", delete(QueueEntryModel).where(QueueEntryModel.search_id == search_id)),
                ("daemon_leases", delete(DaemonLeaseModel).where(
                    DaemonLeaseModel.search_id == search_id)),
                ("events", delete(EventModel).where(EventModel.search_id == search_id)),
                ("results", delete(ResultModel).where(ResultModel.search_id == search_id)),
                ("checkpoints", delete(CheckpointModel).where(CheckpointModel.search_id == search_id)),
                ("trials", delete(TrialModel).where(TrialModel.search_id == search_id)),
                ("searches", delete(SearchModel).where(SearchModel.id == search_id)),
            ]
            out: dict[str, int] = {}
            for table, stmt in statements:
                out[table] = int(getattr(s.execute(stmt), "rowcount", 0))
            return out

    def set_search_config(self, search_id: int, config: dict[str, Any]) -> SearchRecord:
        """Replace a search's JSON config (``adsearch resume --budget-*``) and return it.

        Raises:
            StoreError: Unknown search.
        """
        with self._session() as s:
            row = self._search_row(s, search_id)
            row.config = dict(config)
            row.updated_at = utcnow()
            s.flush()
            return convert.search_record(row)

    # -- controller checkpoints -------------------------------------------------------

    def add_checkpoint(
        self, search_id: int, version: int, path: str, trial_ids: Iterable[int],
        event: tuple[str, str, dict[str, Any]] | None = None,
        learned: Mapping[int, float] | None = None,
    ) -> CheckpointRecord:
        """Record a controller checkpoint and the trials its update consumed.

        Args:
            search_id: The search.
            version: Controller version saved in the file.
            path: The checkpoint file.
            trial_ids: Trials of this search that the update consumed (duplicates ignored).
            event: ``(kind, message, data)`` of an event logged in the same transaction
                (the daemon's ``controller.update``: a kill cannot keep one without the other).
            learned: ``{trial_id: reward}``, the reward the update learned from for each
                consumed trial, stored in ``results.learned_reward`` in the same transaction.

        Returns:
            The stored checkpoint.

        Raises:
            StoreError: Unknown search, a trial id that does not exist, or a ``learned``
                entry that is not finite, not among ``trial_ids`` or has no stored result
                (nothing is written then).
        """
        ids = sorted({int(t) for t in trial_ids})
        if event is not None and (not event[0] or len(event[0]) > 64):
            raise StoreError(f"an event kind must have 1 to 64 characters, got {event[0]!r}")
        rows_learned = [{"b_tid": int(t), "b_reward": float(r)} for t, r in (learned or {}).items()]
        for r in rows_learned:
            if not math.isfinite(r["b_reward"]) or r["b_tid"] not in ids:
                raise StoreError(
                    f"learned reward {r['b_reward']!r} of trial {r['b_tid']}: it must be finite "
                    "and belong to a trial the update consumed"
                )
        with self._session() as s:
            self._search_row(s, search_id)
            if event is not None:
                s.add(EventModel(search_id=search_id, at=utcnow(), kind=event[0],
                                 message=event[1], data=dict(event[2])))
            row = CheckpointModel(
                search_id=search_id, version=int(version), path=str(path), created_at=utcnow()
            )
            s.add(row)
            s.flush()
            if ids:
                s.execute(
                    insert(CheckpointTrialModel),
                    [{"checkpoint_id": row.id, "trial_id": t} for t in ids],
                )
            if rows_learned:
                table = cast(Table, ResultModel.__table__)
                stmt = (
                    update(table)
                    .where(table.c.trial_id == bindparam("b_tid"),
                           table.c.search_id == search_id)
                    .values(learned_reward=bindparam("b_reward"))
                )
                done = s.connection().execute(stmt, rows_learned).rowcount
                if done != len(rows_learned):
                    raise StoreError(
                        f"learned rewards for {len(rows_learned)} trials, but only {done} of "
                        f"them have a stored result in search {search_id}"
                    )
            return convert.checkpoint_record(row, ids)

    def latest_checkpoint(self, search_id: int) -> CheckpointRecord | None:
        """Return the checkpoint with the highest version (latest written on ties), or None."""
        stmt = (
            select(CheckpointModel)
            .where(CheckpointModel.search_id == search_id)
            .order_by(CheckpointModel.version.desc(), CheckpointModel.id.desc())
            .limit(1)
        )
        with self._session(write=False) as s:
            row = s.scalar(stmt)
            if row is None:
                return None
            ids = s.scalars(
                select(CheckpointTrialModel.trial_id).where(
                    CheckpointTrialModel.checkpoint_id == row.id
                )
            ).all()
            return convert.checkpoint_record(row, list(ids))

    def forget_checkpoints(self, search_id: int, event: tuple[str, str, dict[str, Any]]) -> int:
        """Drop every checkpoint record of a search and log ``event`` (kind, message, data),
        in one transaction: ``resume --fresh-controller`` starts a controller that has seen
        no result, so no stored result counts as consumed any more. Returns how many
        checkpoint records were dropped. The event log keeps the old updates."""
        with self._session() as s:
            self._search_row(s, search_id)
            ids = list(s.scalars(select(CheckpointModel.id)
                                 .where(CheckpointModel.search_id == search_id)))
            if ids:
                s.execute(delete(CheckpointTrialModel)
                          .where(CheckpointTrialModel.checkpoint_id.in_(ids)))
                s.execute(delete(CheckpointModel).where(CheckpointModel.id.in_(ids)))
            s.add(EventModel(search_id=search_id, at=utcnow(), kind=event[0],
                             message=event[1], data=dict(event[2])))
            return len(ids)

    def consumed_trial_ids(self, search_id: int) -> set[int]:
        """Return the ids of every trial that any checkpoint of the search consumed."""
        stmt = (
            select(CheckpointTrialModel.trial_id)
            .join(CheckpointModel, CheckpointModel.id == CheckpointTrialModel.checkpoint_id)
            .where(CheckpointModel.search_id == search_id)
        )
        with self._session(write=False) as s:
            return set(s.scalars(stmt))

    # -- event log --------------------------------------------------------------------

    def log_event(
        self, search_id: int, kind: str, message: str, data: dict[str, Any] | None = None
    ) -> EventRecord:
        """Append one event to a search's log.

        Args:
            search_id: The search.
            kind: Short machine-readable kind (at most 64 characters), e.g. ``trial.failed``.
            message: Human-readable line.
            data: JSON-able details.

        Returns:
            The stored event.

        Raises:
            StoreError: Unknown search, or ``kind`` empty or too long.
        """
        if not kind or len(kind) > 64:
            raise StoreError(f"an event kind must have 1 to 64 characters, got {kind!r}")
        with self._session() as s:
            self._search_row(s, search_id)
            row = EventModel(
                search_id=search_id, at=utcnow(), kind=kind, message=message, data=dict(data or {})
            )
            s.add(row)
            s.flush()
            return convert.event_record(row)

    def events(self, search_id: int, limit: int = 50,
               kinds: Sequence[str] | None = None) -> list[EventRecord]:
        """Return the latest ``limit`` events of a search (of the given ``kinds`` only, when
        given), oldest first (like a log tail)."""
        stmt = select(EventModel).where(EventModel.search_id == search_id)
        if kinds is not None:
            stmt = stmt.where(EventModel.kind.in_(list(kinds)))
        stmt = stmt.order_by(EventModel.id.desc()).limit(limit)
        with self._session(write=False) as s:
            rows = s.scalars(stmt).all()
            return [convert.event_record(r) for r in reversed(rows)]
