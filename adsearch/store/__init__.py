"""The trial store (SQLAlchemy 2; SQLite or PostgreSQL). See docs/store.md.

Never imports torch: ``adsearch status``, ``list`` and ``export`` read the store.
"""

from __future__ import annotations

from adsearch.store.engine import BUSY_TIMEOUT_S
from adsearch.store.models import SCHEMA_HEAD, SCHEMA_REVISIONS
from adsearch.store.records import (
    SEARCH_STATES,
    TERMINAL_TRIAL_STATES,
    TRIAL_STATES,
    CheckpointRecord,
    EventRecord,
    FinishedTrial,
    NewTrial,
    ResultRecord,
    SearchRecord,
    TrialRecord,
)
from adsearch.store.schema import current_revision, upgrade
from adsearch.store.storage import Store
from adsearch.store.trials import TRIAL_FIELDS

__all__ = [
    "BUSY_TIMEOUT_S",
    "SCHEMA_HEAD",
    "SCHEMA_REVISIONS",
    "SEARCH_STATES",
    "TERMINAL_TRIAL_STATES",
    "TRIAL_FIELDS",
    "TRIAL_STATES",
    "CheckpointRecord",
    "EventRecord",
    "FinishedTrial",
    "NewTrial",
    "ResultRecord",
    "SearchRecord",
    "Store",
    "TrialRecord",
    "current_revision",
    "upgrade",
]
