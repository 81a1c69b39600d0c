"""The store's contract: every method the daemon, settle, recovery, the slot workers,
``adsearch worker``, verify, calibrate and the CLI call on a store.

:class:`~adsearch.store.Store` keeps it on both backends (SQLite and PostgreSQL, chosen by
the URL; tests/test_store_contract.py checks the signatures and calls every method on both).
Callers annotate with :class:`StoreContract` under ``TYPE_CHECKING``: a protocol costs
nothing at run time, and ``adsearch status`` imports no more than before.

Promises every backend keeps (as Optuna's ``BaseStorage`` states its own):

- **Records, never rows.** Every read returns frozen records (:mod:`adsearch.store.records`,
  JSON-able); timestamps in records are timezone-aware UTC ``datetime`` objects, durations
  are seconds (``float``), rewards the task's metric (higher is better).
- **One method, one transaction.** Every method runs in one session that commits on
  success and rolls back on any error: it happens completely or not at all. Methods that
  write two things say so (a result and its terminal state; a checkpoint, its event and its
  learned rewards) and write both or neither.
- **Compare-and-set.** ``expect_state`` makes a state change conditional, so two processes
  never both move the same trial; :meth:`StoreContract.finish_trial` refuses a trial that is
  finished already.
- **Errors.** Every method raises :class:`~adsearch.errors.StoreError` for a bad argument
  (unknown search or trial, invalid state) and wraps any database error in it; nothing is
  written then. A write on a read-only store raises StoreError too.
- **A lost connection** (PostgreSQL restart) raises
  :class:`~adsearch.errors.StoreUnavailable` only after the call was retried, whole, for
  ``$ADSEARCH_DB_RETRY_SECONDS`` (:mod:`adsearch.store.retry`).
- **Readers never block the writer** (SQLite WAL; PostgreSQL MVCC).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from adsearch.store.leases import DaemonLease
    from adsearch.store.records import (
        CheckpointRecord,
        EventRecord,
        FinishedTrial,
        NewTrial,
        ResultRecord,
        SearchRecord,
        TrialRecord,
    )
    from adsearch.store.rungs import Decide, RungDecision, RungRow

__all__ = ["StoreContract"]


class StoreContract(Protocol):
    """Access to one adsearch database (see the module docstring for the promises)."""

    # -- the store itself -------------------------------------------------------------

    @property
    def url(self) -> str:
        """The store URL, password hidden."""
        ...

    @property
    def readonly(self) -> bool:
        """Whether the store was opened read-only (it never writes then)."""
        ...

    def close(self) -> None:
        """Close every pooled connection. The store cannot be used afterwards."""
        ...

    # -- searches ---------------------------------------------------------------------

    def create_search(self, name: str, config: dict[str, Any]) -> SearchRecord:
        """Create a search in state ``created`` with a JSON-able ``config``.

        Raises:
            StoreError: The name is empty or taken (also when another process took it
                first).
        """
        ...

    def get_search(self, name: str) -> SearchRecord:
        """The search called ``name``.

        Raises:
            StoreError: No such search; the message lists the known ones.
        """
        ...

    def get_search_by_id(self, search_id: int) -> SearchRecord:
        """The search with id ``search_id``.

        Raises:
            StoreError: No such search.
        """
        ...

    def list_searches(self) -> list[SearchRecord]:
        """Every search, oldest first."""
        ...

    def set_search_state(self, search_id: int, state: str) -> SearchRecord:
        """Set a search's state (one of ``SEARCH_STATES``); returns the search.

        Raises:
            StoreError: Unknown search or state.
        """
        ...

    def set_search_config(self, search_id: int, config: dict[str, Any]) -> SearchRecord:
        """Replace a search's JSON config (``resume --budget-*``); returns the search.

        Raises:
            StoreError: Unknown search.
        """
        ...

    def delete_search(self, search_id: int) -> dict[str, int]:
        """Delete a search and every row that belongs to it, in one transaction. Returns
        the number of rows deleted per table.

        Raises:
            StoreError: No such search.
        """
        ...

    # -- trials -----------------------------------------------------------------------

    def add_trials(self, search_id: int, items: Sequence[NewTrial]) -> list[TrialRecord]:
        """Queue new trials (state ``queued``, 0 attempts) in one bulk insert; returns them
        in the order of ``items`` (ids ascending).

        Raises:
            StoreError: Unknown search, an unknown ``purpose`` or a value that is not
                JSON-able; nothing is written then.
        """
        ...

    def add_finished_trials(self, search_id: int,
                            items: Sequence[FinishedTrial]) -> list[TrialRecord]:
        """Store drawn trials that are finished already (``done``, 0 attempts: no child
        ran), each with its result and event, all in one transaction (the admission gate's
        cache hits and refused patterns); returns them in the order of ``items``.

        Raises:
            StoreError: Unknown search, an unknown ``purpose``, a ``cache_of`` that is not a
                trial of the same search, or a value that is not JSON-able; nothing is
                written then.
        """
        ...

    def get_trial(self, trial_id: int) -> TrialRecord:
        """One trial.

        Raises:
            StoreError: No such trial.
        """
        ...

    def update_trial(
        self, trial_id: int, *, expect_state: str | Collection[str] | None = None, **changes: Any
    ) -> TrialRecord:
        """Change a trial's run fields (``state``, ``slot``, ``attempts``, ``pid``,
        ``error``, ``started_at``, ``finished_at``), as a compare-and-set on its state when
        ``expect_state`` is given; returns the trial after the change.

        Raises:
            StoreError: Unknown trial, field or state, or (with ``expect_state``) the trial
                is in another state; nothing is changed then.
        """
        ...

    def update_trials(
        self,
        trial_ids: Sequence[int],
        *,
        expect_state: str | Collection[str] | None = None,
        **changes: Any,
    ) -> int:
        """Apply the same change to many trials in one transaction; trials that do not
        exist or are not in ``expect_state`` are skipped. Returns how many changed.

        Raises:
            StoreError: Unknown field or state.
        """
        ...

    def finish_trial(
        self,
        trial_id: int,
        reward: float | None,
        metrics: dict[str, Any],
        curve: list[dict[str, Any]],
        seconds: float,
        state: str = "done",
        error: str | None = None,
        cache_of: int | None = None,
    ) -> ResultRecord:
        """Store a trial's result and move it to the terminal ``state`` (``done``,
        ``failed`` or ``stale``), in one transaction. ``seconds``: the run's wall-clock
        time; ``reward`` None (or NaN) when the run produced none; ``cache_of``: the trial
        of the same search whose result a cache hit reuses. A ``done`` trial keeps only its
        own ``error``; other states keep the recorded one when ``error`` is None.

        Raises:
            StoreError: Unknown trial, a non-terminal state, the trial is finished already
                (a second call), or a bad ``cache_of``; nothing is written then.
        """
        ...

    # -- queries ----------------------------------------------------------------------

    def trials(
        self,
        search_id: int,
        states: Iterable[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
        purposes: Collection[str] | None = None,
    ) -> list[TrialRecord]:
        """A search's trials in id order, only those in ``states`` and with one of
        ``purposes`` when given (None: all)."""
        ...

    def results(self, search_id: int, trial_ids: Iterable[int] | None = None) -> list[ResultRecord]:
        """A search's results in finish order, only of ``trial_ids`` when given."""
        ...

    def top_trials(self, search_id: int, k: int, *, full_only: bool = False,
                   succeeded_only: bool = False, purposes: Collection[str] | None = None,
                   distinct: bool = False) -> list[tuple[TrialRecord, ResultRecord]]:
        """The ``k`` done trials with the highest reward, best first (ties: first
        finished). ``full_only`` skips children stopped early by a rung, ``succeeded_only``
        bad patterns, ``distinct`` keeps one trial (the best) per pattern."""
        ...

    def counts(self, search_id: int, purposes: Collection[str] | None = None) -> dict[str, int]:
        """How many trials are in each state (every state of ``TRIAL_STATES`` is a key),
        counting only trials with one of ``purposes`` when given."""
        ...

    def bad_patterns(self, search_id: int) -> tuple[int, str | None]:
        """``(count, last error)`` of the bad-pattern results (``metrics["bad_pattern"]``)."""
        ...

    def reward_series(self, search_id: int) -> list[tuple[int, float]]:
        """``(trial_id, reward)`` of every result with a reward, in finish order."""
        ...

    def pattern_runs(
        self, search_id: int, pattern_hashes: Iterable[str]
    ) -> list[tuple[TrialRecord, ResultRecord | None]]:
        """Every trial of the search whose ``pattern_hash`` is one of ``pattern_hashes``,
        with its result (None while it has none), in trial id order."""
        ...

    def dedup_counts(self, search_id: int) -> dict[str, int]:
        """``{"cache_hits": n, "refused": m}``: trials that reused a stored result and
        patterns refused by the drop cap (neither ran a child)."""
        ...

    # -- controller checkpoints -------------------------------------------------------

    def add_checkpoint(
        self, search_id: int, version: int, path: str, trial_ids: Iterable[int],
        event: tuple[str, str, dict[str, Any]] | None = None,
        learned: Mapping[int, float] | None = None,
    ) -> CheckpointRecord:
        """Record a controller checkpoint file and the trials its update consumed, with the
        ``event`` ``(kind, message, data)`` and the ``learned`` rewards ``{trial_id:
        reward}`` (into ``results.learned_reward``), all in one transaction.

        Raises:
            StoreError: Unknown search or trial, or a ``learned`` entry that is not finite,
                not among ``trial_ids`` or without a stored result; nothing is written then.
        """
        ...

    def latest_checkpoint(self, search_id: int) -> CheckpointRecord | None:
        """The checkpoint with the highest version (latest written on ties), or None."""
        ...

    def forget_checkpoints(self, search_id: int, event: tuple[str, str, dict[str, Any]]) -> int:
        """Drop every checkpoint record of a search and log ``event``, in one transaction
        (``resume --fresh-controller``). Returns how many records were dropped."""
        ...

    def consumed_trial_ids(self, search_id: int) -> set[int]:
        """The ids of every trial that any checkpoint of the search consumed."""
        ...

    # -- event log --------------------------------------------------------------------

    def log_event(
        self, search_id: int, kind: str, message: str, data: dict[str, Any] | None = None
    ) -> EventRecord:
        """Append one event (``kind``: 1 to 64 characters, e.g. ``trial.failed``; ``data``
        JSON-able) to a search's log.

        Raises:
            StoreError: Unknown search, or a bad ``kind``.
        """
        ...

    def events(self, search_id: int, limit: int = 50,
               kinds: Sequence[str] | None = None) -> list[EventRecord]:
        """The latest ``limit`` events of a search (of ``kinds`` only, when given), oldest
        first."""
        ...

    # -- rungs (early stopping) -------------------------------------------------------

    def record_rung(self, trial_id: int, rung: float, epoch: float, value: float,
                    decide: Decide | None) -> RungDecision:
        """Store a trial's ``value`` at ``rung`` (epochs; evaluated at ``epoch``) and decide
        whether it goes on, in one transaction that holds the search row's lock, so two
        children at one rung are decided one after the other. ``decide`` None records
        without deciding. A second record of the same trial and rung replaces the first.

        Raises:
            StoreError: Unknown trial.
        """
        ...

    def turn_rung_off(self, search_id: int, rung: float, message: str,
                      data: dict[str, Any]) -> bool:
        """Stop pruning at ``rung`` for good (the config's ``rungs_off``) and log a
        ``rung.off`` event, in one transaction. False (nothing written): it was off already.

        Raises:
            StoreError: Unknown search.
        """
        ...

    def rung_rows(self, search_id: int) -> list[RungRow]:
        """Every rung value of a search, by rung then trial id."""
        ...

    def rung_summary(self, search_id: int) -> list[dict[str, float | int | None]]:
        """Per rung (ascending): ``rung``, ``reached``, ``promoted``, ``stopped``,
        ``threshold`` and ``best``."""
        ...

    # -- the daemon lease -------------------------------------------------------------

    def acquire_daemon_lease(self, lease: DaemonLease,
                             alive: Callable[[DaemonLease], bool]) -> DaemonLease | None:
        """Make ``lease`` the search's daemon unless a live one holds it (``alive`` is the
        daemon layer's rule), in one transaction that locks the search row. Returns None
        when ``lease`` holds it now, else the live holder, untouched.

        Raises:
            StoreError: Unknown search.
        """
        ...

    def renew_daemon_lease(self, search_id: int, owner: str, now: float | None = None) -> bool:
        """Move the heartbeat of ``owner``'s lease to ``now`` (seconds since the epoch;
        default: the current time). False: ``owner`` holds the lease no more."""
        ...

    def release_daemon_lease(self, search_id: int, owner: str) -> None:
        """Delete ``owner``'s lease of the search (a lease someone else holds stays)."""
        ...

    def daemon_lease(self, search_id: int) -> DaemonLease | None:
        """The search's lease row, live or not (None: no daemon holds it)."""
        ...
