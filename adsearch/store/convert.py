"""Row-to-record conversion: the only place that reads ORM rows for callers."""

from __future__ import annotations

from typing import Any

from adsearch.store.models import (
    CheckpointModel,
    EventModel,
    ResultModel,
    SearchModel,
    TrialModel,
)
from adsearch.store.records import (
    CheckpointRecord,
    EventRecord,
    ResultRecord,
    SearchRecord,
    TrialRecord,
    as_utc,
)


def search_record(row: SearchModel) -> SearchRecord:
    """Freeze a search row."""
    return SearchRecord(
        id=row.id,
        name=row.name,
        config=dict(row.config),
        state=row.state,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        updated_at=as_utc(row.updated_at),  # type: ignore[arg-type]
    )


def trial_record(row: TrialModel | Any) -> TrialRecord:
    """Freeze a trial row (an ORM object or a Core row with the same columns)."""
    return TrialRecord(
        id=row.id,
        search_id=row.search_id,
        pattern=list(row.pattern),
        pattern_hash=row.pattern_hash,
        tokens=list(row.tokens),
        controller_version=row.controller_version,
        logp=row.logp,
        seed=row.seed,
        state=row.state,
        slot=row.slot,
        attempts=row.attempts,
        pid=row.pid,
        error=row.error,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        started_at=as_utc(row.started_at),
        finished_at=as_utc(row.finished_at),
        purpose=row.purpose,
    )


def result_record(row: ResultModel | Any) -> ResultRecord:
    """Freeze a result row."""
    return ResultRecord(
        trial_id=row.trial_id,
        reward=row.reward,
        metrics=dict(row.metrics),
        curve=list(row.curve),
        seconds=row.seconds,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        learned_reward=row.learned_reward,
        cache_of=row.cache_of,
    )


def checkpoint_record(row: CheckpointModel, trial_ids: list[int]) -> CheckpointRecord:
    """Freeze a checkpoint row with the ids of the trials it consumed."""
    return CheckpointRecord(
        id=row.id,
        search_id=row.search_id,
        version=row.version,
        path=row.path,
        trial_ids=sorted(trial_ids),
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
    )


def event_record(row: EventModel) -> EventRecord:
    """Freeze an event row."""
    return EventRecord(
        id=row.id,
        search_id=row.search_id,
        at=as_utc(row.at),  # type: ignore[arg-type]
        kind=row.kind,
        message=row.message,
        data=dict(row.data),
    )
