"""SQLAlchemy 2 models of the trial store (backend-neutral: SQLite and PostgreSQL).

The schema matches the Alembic head in ``migrations/versions``; a test compares the two.
JSON columns use :class:`sqlalchemy.JSON`, which both backends support. Indexes serve the
queries that ``adsearch status`` runs on searches with 100,000 trials:

- ``ix_trials_search_state (search_id, state)``: counts per state, "running trials", and
  listing trials of some states;
- ``ix_results_search_reward (search_id, reward)``: top-k by reward;
- ``ix_results_search_id (search_id, id)``: rewards in finish order;
- ``ix_trials_search_hash (search_id, pattern_hash)``: "was this pattern tried already?".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_REVISIONS: tuple[str, ...] = ("0001", "0002", "0003", "0004", "0005", "0006")
"""Every Alembic revision in ``migrations/versions``, oldest first (a test checks this)."""

SCHEMA_HEAD = SCHEMA_REVISIONS[-1]
"""The Alembic revision these models describe (the head of ``migrations/versions``)."""

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of the store's tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class SearchModel(Base):
    """A named search."""

    __tablename__ = "searches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TrialModel(Base):
    """A drawn pattern and the state of its child run."""

    __tablename__ = "trials"
    __table_args__ = (
        Index("ix_trials_search_state", "search_id", "state"),
        Index("ix_trials_search_hash", "search_id", "pattern_hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    pattern: Mapped[list[Any]] = mapped_column(JSON)
    pattern_hash: Mapped[str] = mapped_column(String(64))
    tokens: Mapped[list[Any]] = mapped_column(JSON)
    controller_version: Mapped[int] = mapped_column(Integer)
    logp: Mapped[float] = mapped_column(Float)
    seed: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    slot: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    pid: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Revision 0005: 'search' (drawn by the controller), 'recheck' or 'enqueued'.
    purpose: Mapped[str] = mapped_column(String(16), default="search", server_default="search")


class ResultModel(Base):
    """The result of a finished trial (at most one per trial)."""

    __tablename__ = "results"
    __table_args__ = (
        Index("ix_results_search_reward", "search_id", "reward"),
        Index("ix_results_search_id", "search_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # finish order
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), unique=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    reward: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    curve: Mapped[list[Any]] = mapped_column(JSON)
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Revision 0005: the reward the controller learned from (set by the update that consumed
    # the trial), and the trial whose stored result a cache hit reused (no foreign key).
    learned_reward: Mapped[float | None] = mapped_column(Float)
    cache_of: Mapped[int | None] = mapped_column(Integer)


class CheckpointModel(Base):
    """A controller checkpoint file written after an update."""

    __tablename__ = "checkpoints"
    __table_args__ = (Index("ix_checkpoints_search_version", "search_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CheckpointTrialModel(Base):
    """Which trials the update behind a checkpoint consumed (one row per trial)."""

    __tablename__ = "checkpoint_trials"

    checkpoint_id: Mapped[int] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="CASCADE"), primary_key=True
    )
    trial_id: Mapped[int] = mapped_column(
        ForeignKey("trials.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class EventModel(Base):
    """One line of a search's event log (added in revision 0002)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_search_id", "search_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class QueueEntryModel(Base):
    """A queued or leased trial of the database queue (added in revision 0003).

    ``owner`` is NULL while the trial waits; a claim sets it with the lease fields. Times
    are seconds since the epoch on the claiming host (keep hosts' clocks in sync, NTP).
    """

    __tablename__ = "queue_entries"
    __table_args__ = (
        Index("ix_queue_entries_claim", "search_id", "owner", "priority", "enqueued_ns"),
    )

    trial_id: Mapped[int] = mapped_column(
        ForeignKey("trials.id", ondelete="CASCADE"), primary_key=True
    )
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    priority: Mapped[int] = mapped_column(Integer)  # 0: requeued work (first), 1: new
    enqueued_ns: Mapped[int] = mapped_column(BigInteger)
    owner: Mapped[str | None] = mapped_column(String(255))
    slot: Mapped[str | None] = mapped_column(String(64))
    pid: Mapped[int | None] = mapped_column(Integer)
    claimed_at: Mapped[float | None] = mapped_column(Float)
    heartbeat_at: Mapped[float | None] = mapped_column(Float)


class RungModel(Base):
    """A trial's value at one rung of the successive-halving scheduler (revision 0004).

    ``rung`` and ``epoch`` are in epochs (``epoch``: where the child evaluated, at or after
    the rung). ``promoted`` is NULL at the last rung (the full budget: nothing to decide),
    ``threshold`` NULL while the rung held too few values to stop anyone.
    """

    __tablename__ = "rungs"
    __table_args__ = (Index("ix_rungs_search_id", "search_id", "rung"),)

    trial_id: Mapped[int] = mapped_column(
        ForeignKey("trials.id", ondelete="CASCADE"), primary_key=True
    )
    rung: Mapped[float] = mapped_column(Float, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    epoch: Mapped[float] = mapped_column(Float)
    value: Mapped[float] = mapped_column(Float)
    promoted: Mapped[bool | None] = mapped_column(Boolean)
    threshold: Mapped[float | None] = mapped_column(Float)
    recorded_at: Mapped[float] = mapped_column(Float)


class DaemonLeaseModel(Base):
    """The live daemon of a search (revision 0006): one row while a daemon runs it.

    ``owner`` is unique per daemon process and start; ``ident`` the process identity
    (:func:`adsearch.daemon.rundir.process_identity`); times are seconds since the epoch on
    the daemon's host. See :mod:`adsearch.store.leases`.
    """

    __tablename__ = "daemon_leases"

    search_id: Mapped[int] = mapped_column(
        ForeignKey("searches.id", ondelete="CASCADE"), primary_key=True
    )
    owner: Mapped[str] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    ident: Mapped[str] = mapped_column(String(128))
    run_dir: Mapped[str] = mapped_column(Text)
    started_at: Mapped[float] = mapped_column(Float)
    heartbeat_at: Mapped[float] = mapped_column(Float)
