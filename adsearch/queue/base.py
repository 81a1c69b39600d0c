"""The queue's contract: what the daemon, recovery and ``adsearch worker`` may ask of a queue.

Two backends keep it: :class:`~adsearch.queue.filequeue.FileQueue` (files under the run
directory, one host, SQLite stores) and :class:`~adsearch.queue.dbqueue.DbQueue` (rows of
the store, many hosts, PostgreSQL stores). Both promise:

- the queue holds order and leases only; the store's trial states are the truth, and
  whoever finds an expired lease (the daemon's recovery) decides what it means;
- a trial is waiting, leased or absent, never two of these; pushing a trial that is already
  waiting or leased changes nothing, so recovery may push freely;
- claim order is "front" work (requeued) first, then push order; a claim is atomic: two
  claimers, in two processes or on two hosts, never get the same trial;
- every change is whole or absent after a crash (a file rename, or one transaction);
- a lease whose heartbeat is older than ``lease_seconds`` has expired (its holder died or
  hangs). Times are seconds since the epoch (``time.time()``) on the writing host.

Callers annotate with :class:`Queue` (under ``TYPE_CHECKING``: a protocol costs nothing at
run time). :class:`Lease` and :class:`LeaseLost` are shared by both backends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from adsearch.errors import DaemonError

__all__ = ["Lease", "LeaseLost", "Queue"]


class LeaseLost(DaemonError):
    """A worker's lease was revoked (expired and requeued by someone else)."""


@dataclass(frozen=True)
class Lease:
    """A claimed trial.

    ``claimed_at`` and ``heartbeat_at`` are seconds since the epoch; ``pid`` is the process
    that runs (or will run) the trial's child, ``slot`` the holder's slot name (``cpu0``).
    """

    trial_id: int
    owner: str
    slot: str
    pid: int
    claimed_at: float
    heartbeat_at: float

    def expired(self, now: float, lease_seconds: float) -> bool:
        """Whether the last heartbeat is more than ``lease_seconds`` (s) before ``now``."""
        return now - self.heartbeat_at > lease_seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            "owner": self.owner,
            "slot": self.slot,
            "pid": self.pid,
            "claimed_at": self.claimed_at,
            "heartbeat_at": self.heartbeat_at,
        }


class Queue(Protocol):
    """A FIFO of trial ids with leases. Every method may raise
    :class:`~adsearch.errors.AdsearchError` (a lock held too long, a lost store)."""

    #: A lease without a heartbeat for this many seconds has expired.
    lease_seconds: float

    # ------------------------------------------------------------------ reading
    def pending(self) -> list[int]:
        """Waiting trial ids, in claim order (a leased trial is not waiting)."""
        ...

    def __len__(self) -> int:
        """How many trials wait (``len(pending())``)."""
        ...

    def lease(self, trial_id: int) -> Lease | None:
        """The lease of ``trial_id``, or None if it holds none."""
        ...

    def leases(self) -> list[Lease]:
        """Every lease, by trial id."""
        ...

    def expired(self, now: float | None = None) -> list[Lease]:
        """Leases whose last heartbeat is older than ``lease_seconds`` at ``now`` (seconds
        since the epoch; default: the current time), by trial id."""
        ...

    def holds(self, trial_id: int, owner: str) -> bool:
        """Whether ``owner`` holds the lease of ``trial_id``."""
        ...

    # ------------------------------------------------------------------ writing
    def push(self, trial_ids: Iterable[int], *, front: bool = False) -> None:
        """Append trials in the given order (``front``: ahead of every waiting trial, for
        requeued work). A trial already waiting or leased is left as it is."""
        ...

    def claim(self, owner: str, slot: str, pid: int | None = None) -> Lease | None:
        """Lease the first waiting trial to ``owner`` (atomic), with ``pid`` (default: this
        process) as the child's process. None when nothing waits (or, for the database
        queue, when the search is no longer claimable)."""
        ...

    def heartbeat(self, trial_id: int, owner: str | None = None) -> None:
        """Keep a lease alive (its ``heartbeat_at`` becomes now).

        Raises:
            LeaseLost: ``trial_id`` holds no lease (of ``owner``, when given): it expired
                and was given to someone else, or the trial ended elsewhere.
        """
        ...

    def ack(self, trial_id: int) -> None:
        """Drop the lease and any waiting entry of a trial that reached a terminal state."""
        ...

    def release(self, trial_id: int, *, front: bool = True) -> None:
        """Give a leased trial back: it waits again (first in line by default). A trial
        without a lease is pushed."""
        ...

    def discard(self, trial_ids: Iterable[int]) -> None:
        """Remove trials from the queue entirely (waiting entries and leases)."""
        ...

    def repair(self) -> None:
        """Undo what a crash mid-change left behind (a no-op where every change is one
        transaction)."""
        ...

    def release_owner(self, owner: str) -> list[int]:
        """Give back every lease of ``owner`` (a worker that stops), first in line. Returns
        their trial ids, ascending."""
        ...
