"""What a failed child means, and when a search that only fails must stop. No torch here.

A child can fail in four ways (**ours**; the paper only says that bad patterns get a low
reward). :func:`classify` maps an exception to one of them:

- ``"bad_pattern"``: the pattern broke training (a :class:`~adsearch.errors.PatternError`,
  a non-finite loss or reward, a numeric error). That is a *result* of the pattern: the
  trial is ``done`` with the search's ``failure_reward`` and the controller learns from it;
- ``"error"``: a bug in the task's or the user's code (``ImportError``, ``NameError``,
  ``TypeError``, ``AttributeError``, a missing file, ...). Every child would fail alike and
  the failure says nothing about the pattern, so it is *not* a result: the trial is requeued
  uncounted and the search stops as ``failed`` with the error and the child's log;
- ``"infra"``: the machine, not the pattern (out of memory, killed, timed out, disk full):
  the trial is retried up to ``max_attempts`` times;
- ``"config"``: an adsearch error about the data, the task config or the search's space
  (``DataError``, ``ConfigError``, and ``SpaceMismatchError``: patterns for another site
  count than the model has, e.g. ``--space conv-5`` for a 4-stage ResNet, which every
  pattern of the space would hit alike): handled like ``"error"`` (the search stops as
  ``failed``, with the whole message in ``status``).

An exception may say which it is, so that a failure in another process keeps its class:
``exc.adsearch_failure`` (one of the four strings) wins; else ``exc.user_exception`` (the
type *name* of an exception raised in user code elsewhere, e.g. by a trial script) is
classified as if it were the exception's own type. Anything not recognised counts as a bad
pattern, and :class:`FailureBreaker` catches what slips through that way: a search whose
children fail again and again stops instead of "finishing" on failures.
"""

from __future__ import annotations

import errno
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adsearch.daemon.config import SearchConfig

BAD_PATTERN, ERROR, INFRA, CONFIG = "bad_pattern", "error", "infra", "config"
FAILURE_CLASSES = (BAD_PATTERN, ERROR, INFRA, CONFIG)

#: Exception type names that mean a bug in code, not something the pattern caused.
ERROR_TYPES = frozenset({
    "ImportError", "ModuleNotFoundError", "NameError", "UnboundLocalError", "TypeError",
    "AttributeError", "SyntaxError", "IndentationError", "TabError", "KeyError", "IndexError",
    "LookupError", "NotImplementedError", "AssertionError", "RecursionError",
    "FileNotFoundError", "PermissionError", "IsADirectoryError", "NotADirectoryError",
    "FileExistsError", "UnicodeDecodeError", "UnicodeEncodeError", "OSError",
})
#: ... that mean the machine ran out of something (retried).
INFRA_TYPES = frozenset({"MemoryError", "OutOfMemoryError", "TimeoutError",
                         "ConnectionError", "BrokenPipeError", "ConnectionResetError"})
#: Message fragments of infrastructure failures whose type says nothing (CUDA errors).
INFRA_TEXT = ("CUDA out of memory", "CUDA error: out of memory", "No space left on device")
#: ... that the pattern caused: results of that pattern.
BAD_PATTERN_TYPES = frozenset({"PatternError", "FloatingPointError", "ZeroDivisionError",
                               "OverflowError"})
#: adsearch's own errors about data or settings (checked in MRO order, so a
#: ``SpaceMismatchError`` is a config error although it is also a ``PatternError``).
CONFIG_TYPES = frozenset({"SpaceMismatchError", "DataError", "ConfigError", "CheckpointError",
                          "StoreError", "SchemaOutOfDateError", "DaemonError", "AdsearchError"})


def classify(exc: BaseException) -> str:
    """The failure class of ``exc``: ``"bad_pattern"``, ``"error"``, ``"infra"`` or
    ``"config"`` (see the module docstring). Never raises."""
    tag = getattr(exc, "adsearch_failure", None)
    if tag in FAILURE_CLASSES:
        return str(tag)
    if any(s in str(exc) for s in INFRA_TEXT):
        return INFRA
    user = getattr(exc, "user_exception", None)
    if isinstance(user, str) and user.strip():
        names = [user.strip().rsplit(".", 1)[-1]]  # "torch.cuda.OutOfMemoryError" too
    else:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return INFRA
        names = [t.__name__ for t in type(exc).__mro__]  # most specific first
    for name in names:
        if name in INFRA_TYPES:
            return INFRA
        if name in BAD_PATTERN_TYPES:
            return BAD_PATTERN
        if name in CONFIG_TYPES:
            return CONFIG
        if name in ERROR_TYPES:
            return ERROR
    return BAD_PATTERN  # e.g. a RuntimeError from deep inside training: the breaker watches


class FailureBreaker:
    """Stops a search whose children keep failing (**ours**).

    Fed one call of :meth:`observe` per trial that ended (a result, or a trial given up after
    ``max_attempts``), in the order they ended. Trips when ``max_consecutive`` trials in a row
    failed, or when more than ``max_share`` of the last ``window`` trials failed (checked once
    ``window`` trials have ended). ``None`` turns a rule off. State is in memory: a resumed
    search starts counting afresh.
    """

    def __init__(self, max_consecutive: int | None, max_share: float | None,
                 window: int) -> None:
        self.max_consecutive = max_consecutive
        self.max_share = max_share
        self.window = window
        self.streak = 0  # failures in a row, up to now
        self.failures = 0  # failures seen in all
        self.last_error: str | None = None
        self._recent: deque[bool] = deque(maxlen=window)

    @classmethod
    def from_config(cls, cfg: SearchConfig) -> FailureBreaker:
        """The breaker a :class:`~adsearch.daemon.config.SearchConfig` asks for."""
        return cls(cfg.max_consecutive_failures, cfg.max_failure_share, cfg.failure_window)

    def observe(self, failed: bool, error: str | None = None) -> str | None:
        """Count one ended trial; return why the search must stop, or None."""
        self._recent.append(failed)
        if not failed:
            self.streak = 0
            return None
        self.streak += 1
        self.failures += 1
        self.last_error = (error or "no error text")[:500]
        if self.max_consecutive is not None and self.streak >= self.max_consecutive:
            return (f"{self.streak} trials in a row failed (last error: {self.last_error}); "
                    "so many failures look like a bug in the task or its config, not bad "
                    "patterns: fix it and `adsearch resume`, or raise "
                    "--max-consecutive-failures")
        if self.max_share is not None and len(self._recent) == self.window:
            share = sum(self._recent) / self.window
            if share > self.max_share:
                return (f"{sum(self._recent)} of the last {self.window} trials failed "
                        f"(last error: {self.last_error}); so many failures look like a bug "
                        "in the task or its config, not bad patterns: fix it and `adsearch "
                        "resume`, or raise --max-failure-share")
        return None
