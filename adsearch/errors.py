"""One exception root for the whole project.

Every error a user can cause derives from :class:`AdsearchError`. Messages say what
happened *and* what to do about it; the CLI prints them on stderr without a traceback
and exits non-zero.
"""

from __future__ import annotations


class AdsearchError(Exception):
    """Root of every error adsearch raises on purpose."""


class PatternError(AdsearchError, ValueError):
    """A pattern, a pattern file or a token sequence is invalid.

    The message names the field, the bad value and the allowed values.
    """


class SpaceMismatchError(PatternError):
    """Patterns written for another space than the model's sites (another site count, or
    conv patterns for a Transformer). In a search that is a configuration error of the search
    (its ``--space``), not a result of one pattern: the daemon stops the search as ``failed``
    on the first child that raises it (adsearch/daemon/failures.py)."""


class DataError(AdsearchError, ValueError):
    """A data path is missing, empty, corrupt or laid out wrongly."""


class ConfigError(AdsearchError, ValueError):
    """A task, search or CLI setting is invalid (unknown task, bad budget, ...)."""


class CheckpointError(AdsearchError):
    """A controller checkpoint is missing, corrupt, or belongs to another search space."""


class StoreError(AdsearchError):
    """The trial store failed (database error, unknown search, ...)."""


class StoreUnavailable(StoreError):
    """The database connection was lost (a server restart, a failover): the call may succeed
    when it is made again (:mod:`adsearch.store.retry` does so)."""


class SchemaOutOfDateError(StoreError):
    """The store's schema revision is older than this adsearch needs."""


class DaemonError(AdsearchError):
    """The search daemon cannot start or act (already running, not running, ...)."""
