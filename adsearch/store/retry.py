"""Riding out a lost database connection (a PostgreSQL restart or failover).

A store method whose connection is lost (the server restarted, a failover, a network blip)
raises :class:`~adsearch.errors.StoreUnavailable` from :meth:`StoreCore._session`. Every public
method of :class:`~adsearch.store.Store` and :class:`~adsearch.queue.dbqueue.DbQueue` is
wrapped by :func:`retrying_methods`: such a call is run again, whole (a new transaction on a
new connection; the pool's ``pre_ping`` drops dead ones), with exponential backoff from
0.2 s to 5 s, until it succeeds or ``$ADSEARCH_DB_RETRY_SECONDS`` (default 120 s) have passed;
then the error propagates. A database restart thus costs a pause, not a crash, and a result
that a worker finished is stored once the server is back.

Calls nested in a retried call are not retried on their own (the outermost one retries the
whole), so the budget does not multiply. SQLite never raises StoreUnavailable: a locked
database waits on its busy timeout instead (:mod:`adsearch.store.engine`).

One caveat, as for any client: when the connection drops *during* a commit, the client cannot
know whether the server applied it, and the retry runs the write again. State updates are
idempotent; ``finish_trial``, which refuses a second call, returns the stored result instead
when :func:`in_retry` says the call is a retry (its first commit went through); a retried
``add_trials`` or ``log_event`` could add its rows twice in that narrow window.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from adsearch.errors import StoreError, StoreUnavailable

log = logging.getLogger("adsearch.store")

RETRY_SECONDS = 120.0
"""Default of ``$ADSEARCH_DB_RETRY_SECONDS``: how long a call waits for the database to come
back before it gives up."""

_local = threading.local()
_T = TypeVar("_T")


def retry_seconds() -> float:
    raw = os.environ.get("ADSEARCH_DB_RETRY_SECONDS", "")
    if not raw:
        return RETRY_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise StoreError(f"$ADSEARCH_DB_RETRY_SECONDS={raw!r}: use a number of seconds >= 0")
    return value


def retried(fn: Callable[..., _T]) -> Callable[..., _T]:
    """Run ``fn`` again, whole, while it raises StoreUnavailable (see the module docstring)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> _T:
        if getattr(_local, "depth", 0):  # the outermost retried call retries the whole
            return fn(*args, **kwargs)
        deadline = time.monotonic() + retry_seconds()
        delay = 0.2
        _local.depth = 1
        _local.retrying = False
        try:
            while True:
                try:
                    return fn(*args, **kwargs)
                except StoreUnavailable as exc:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise
                    log.warning("%s: %s; retrying in %.1f s (%.0f s left)", fn.__qualname__,
                                exc, min(delay, left), left)
                    time.sleep(min(delay, left))
                    delay = min(delay * 2, 5.0)
                    _local.retrying = True
        finally:
            _local.depth = 0
            _local.retrying = False

    return wrapper


def in_retry() -> bool:
    """True inside a store call that is being run again after a lost connection (the first
    run's commit may have been applied)."""
    return bool(getattr(_local, "retrying", False))


#: Special methods that read or write the database, wrapped like public ones: ``len(queue)``
#: is a store call too (it was not wrapped once, and a daemon died on a restart).
DATA_DUNDERS = frozenset({"__len__", "__contains__", "__iter__", "__getitem__", "__bool__"})


def wrapped_names(cls: type) -> list[str]:
    """The methods of ``cls`` itself that :func:`retrying_methods` wraps."""
    return [name for name, value in vars(cls).items()
            if (not name.startswith("_") or name in DATA_DUNDERS) and callable(value)
            and not isinstance(value, (staticmethod, classmethod, type))]


def retrying_methods(cls: type[_T]) -> type[_T]:
    """Class decorator: wrap every public method defined in ``cls`` itself, and the special
    methods in :data:`DATA_DUNDERS`, with :func:`retried`."""
    for name in wrapped_names(cls):
        setattr(cls, name, retried(vars(cls)[name]))
    return cls
