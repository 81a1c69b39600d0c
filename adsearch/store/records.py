"""Frozen records that the store hands to its callers.

The store never returns ORM rows: every read converts rows into these frozen dataclasses
inside the session that loaded them, so a record stays valid after the session closes and
cannot write back to the database by accident. Each record has ``to_dict()`` (JSON-able:
datetimes become ISO-8601 strings in UTC) and ``from_dict()`` for the round trip.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

SEARCH_STATES: tuple[str, ...] = ("created", "running", "stopping", "stopped", "finished", "failed")
"""Every state a search can be in."""

TRIAL_STATES: tuple[str, ...] = ("queued", "running", "done", "failed", "stale")
"""Every state a trial can be in."""

TERMINAL_TRIAL_STATES: frozenset[str] = frozenset({"done", "failed", "stale"})
"""Trial states that end a trial: :meth:`Store.finish_trial` refuses to finish such a trial."""

TRIAL_PURPOSES: tuple[str, ...] = ("search", "recheck", "enqueued")
"""Why a trial exists: drawn by the controller (``search``), a re-check seed of a top pattern
before export (``recheck``), or a pattern the user enqueued (``enqueued``)."""

_R = TypeVar("_R")


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


def as_utc(value: datetime | None) -> datetime | None:
    """Return ``value`` as an aware UTC datetime (naive values are taken to be UTC).

    SQLite keeps no time zone, so datetimes read back from it are naive; PostgreSQL returns
    aware ones. Records always hold aware UTC datetimes, whatever the backend.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _to_dict(record: Any) -> dict[str, Any]:
    return {f.name: _encode(getattr(record, f.name)) for f in dataclasses.fields(record)}


def _from_dict(cls: type[_R], data: Mapping[str, Any]) -> _R:
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data and f.default is not dataclasses.MISSING:
            continue  # a field added later (dicts written before it keep loading)
        value = data[f.name]
        if isinstance(value, str) and f.name in _DATETIME_FIELDS:
            value = as_utc(datetime.fromisoformat(value))
        kwargs[f.name] = value
    return cls(**kwargs)


_DATETIME_FIELDS = frozenset({"created_at", "updated_at", "started_at", "finished_at", "at"})


@dataclass(frozen=True)
class SearchRecord:
    """One search: a named run of the controller over one task configuration."""

    id: int
    name: str
    config: dict[str, Any]  # the search configuration as saved by `adsearch search create`
    state: str  # one of SEARCH_STATES
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (datetimes as ISO-8601 strings)."""
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchRecord:
        """Build a record from the output of :meth:`to_dict`."""
        return _from_dict(cls, data)


@dataclass(frozen=True)
class NewTrial:
    """A trial that the controller drew and that is not stored yet (input of ``add_trials``)."""

    pattern: list[dict[str, Any]]  # one pattern dict per site of the search space
    pattern_hash: str  # stable hash of ``pattern`` (deduplication, lookups)
    tokens: list[int]  # the controller's token sequence that decodes to ``pattern``
    controller_version: int  # version of the controller that drew it
    logp: float  # behaviour log-probability of ``tokens`` under that controller
    seed: int  # seed of the child training run
    purpose: str = "search"  # one of TRIAL_PURPOSES


@dataclass(frozen=True)
class FinishedTrial:
    """A drawn trial stored already ``done``, with its result and one event, in one
    transaction (input of ``add_finished_trials``): a cache hit, which reuses the result of
    trial ``cache_of``, or a pattern refused before training (adsearch.daemon.dedup)."""

    trial: NewTrial
    reward: float | None  # the reward (the source's for a hit, the failure reward if refused)
    metrics: dict[str, Any]
    curve: list[dict[str, Any]]
    seconds: float  # wall-clock seconds of a child run: 0, none ran
    error: str | None = None  # the trial's error (a refusal's reason)
    cache_of: int | None = None  # a cache hit: the trial whose stored result it reuses
    event: tuple[str, str, dict[str, Any]] | None = None  # (kind, message, data); the message
    # is prefixed with "trial ID " and data gets "trial_id"


@dataclass(frozen=True)
class TrialRecord:
    """One stored trial: a drawn pattern and the life of its child training run."""

    id: int
    search_id: int
    pattern: list[dict[str, Any]]
    pattern_hash: str
    tokens: list[int]
    controller_version: int
    logp: float
    seed: int
    state: str  # one of TRIAL_STATES
    slot: int | None  # worker slot (device) running it, None when not running
    attempts: int  # how many times a child run was started for it
    pid: int | None  # process id of the child run, None when not running
    error: str | None  # last error message, if a run failed
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    purpose: str = "search"  # one of TRIAL_PURPOSES (revision 0005)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (datetimes as ISO-8601 strings)."""
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRecord:
        """Build a record from the output of :meth:`to_dict`."""
        return _from_dict(cls, data)


@dataclass(frozen=True)
class ResultRecord:
    """The outcome of one finished trial."""

    trial_id: int
    reward: (
        float | None
    )  # validation reward; None when the run produced none (NaN is stored as None)
    metrics: dict[str, Any]  # final metrics reported by the task
    curve: list[dict[str, Any]]  # learning curve, one dict per evaluation
    seconds: float  # wall-clock seconds of the child run
    created_at: datetime
    learned_reward: float | None = None  # the reward the controller's update used (0005)
    cache_of: int | None = None  # the trial whose stored result this one reused (0005)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (datetimes as ISO-8601 strings)."""
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResultRecord:
        """Build a record from the output of :meth:`to_dict`."""
        return _from_dict(cls, data)


@dataclass(frozen=True)
class CheckpointRecord:
    """A saved controller checkpoint and the trials its update consumed."""

    id: int
    search_id: int
    version: int  # controller version saved in the file
    path: str  # checkpoint file path
    trial_ids: list[int]  # trials consumed by the update that produced this version
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (datetimes as ISO-8601 strings)."""
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckpointRecord:
        """Build a record from the output of :meth:`to_dict`."""
        return _from_dict(cls, data)


@dataclass(frozen=True)
class EventRecord:
    """One line of a search's event log."""

    id: int
    search_id: int
    at: datetime
    kind: str  # short machine-readable kind, e.g. "trial.failed", "daemon.start"
    message: str  # human-readable line
    data: dict[str, Any]  # structured details

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (datetimes as ISO-8601 strings)."""
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventRecord:
        """Build a record from the output of :meth:`to_dict`."""
        return _from_dict(cls, data)


def clean_reward(reward: float | None) -> float | None:
    """Return ``reward`` as a float, or None for None/NaN (databases disagree on NaN)."""
    if reward is None:
        return None
    value = float(reward)
    return None if math.isnan(value) else value
