"""The trial queue as database rows: one queue for daemons and workers on many hosts.

The same contract as :class:`~adsearch.queue.FileQueue` (:class:`~adsearch.queue.base.Queue`),
so the daemon's recovery code (:mod:`adsearch.daemon.recovery`) works with either. The rows
live in the store's ``queue_entries`` table (schema revision 0003), one per queued or leased trial:

- a waiting trial has ``owner IS NULL``; claim order is ``(priority, enqueued_ns)``, where
  priority 0 is requeued work (first in line) and 1 new work;
- :meth:`DbQueue.claim` picks the first waiting row with ``SELECT ... FOR UPDATE SKIP
  LOCKED`` on PostgreSQL, so concurrent claimers never wait on each other and never get the
  same row; on SQLite the write transaction (``BEGIN IMMEDIATE``) serialises claimers;
- a claimed row is a *lease*: its holder renews ``heartbeat_at`` every few seconds, and a
  lease without a heartbeat for ``lease_seconds`` has expired (its worker or host died).
  Times are seconds since the epoch on the writing host: keep the hosts' clocks in sync.

As with the file queue, the store's trial states are the truth; this queue holds order and
leases only, and whoever finds an expired lease (the daemon) decides what it means.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, exists, func, select, update

from adsearch.queue.base import Lease, LeaseLost
from adsearch.store.models import QueueEntryModel as Q
from adsearch.store.models import SearchModel as S
from adsearch.store.retry import retrying_methods

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from sqlalchemy.orm import Session

    from adsearch.store import Store

_FRONT, _BACK = 0, 1
#: Search states in which a trial may be claimed. Once a stop is asked for, the daemon writes
#: ``stopping`` and no claim succeeds anywhere, however late a worker re-reads the state.
CLAIMABLE_STATES = ("created", "running")


def default_owner(kind: str = "worker") -> str:
    """A lease owner name unique across hosts: ``KIND-HOST-PID``."""
    return f"{kind}-{socket.gethostname()}-{os.getpid()}"


def _lease(row: Any) -> Lease:
    return Lease(trial_id=int(row.trial_id), owner=str(row.owner), slot=str(row.slot or ""),
                 pid=int(row.pid or 0), claimed_at=float(row.claimed_at or 0.0),
                 heartbeat_at=float(row.heartbeat_at or 0.0))


@retrying_methods  # a lost connection costs a retry, not a crash (store/retry.py)
class DbQueue:
    """A FIFO of trial ids with leases, stored as rows of the search's store.

    Args:
        store: an open writable :class:`~adsearch.store.Store` (its one session helper runs
            every transaction here).
        search_id: the search whose trials this queue holds.
        lease_seconds: a lease without a heartbeat for this long has expired.
    """

    def __init__(self, store: Store, search_id: int, *, lease_seconds: float = 60.0) -> None:
        self.store = store
        self.search_id = int(search_id)
        self.lease_seconds = float(lease_seconds)

    def _session(self, write: bool = True) -> AbstractContextManager[Session]:
        return self.store._session(write=write)  # noqa: SLF001 - the store's transaction helper

    # ------------------------------------------------------------------ reading
    def pending(self) -> list[int]:
        """Waiting trial ids in claim order."""
        stmt = (select(Q.trial_id).where(Q.search_id == self.search_id, Q.owner.is_(None))
                .order_by(Q.priority, Q.enqueued_ns, Q.trial_id))
        with self._session(write=False) as s:
            return [int(t) for t in s.scalars(stmt)]

    def __len__(self) -> int:
        stmt = (select(func.count()).select_from(Q)
                .where(Q.search_id == self.search_id, Q.owner.is_(None)))
        with self._session(write=False) as s:
            return int(s.scalar(stmt) or 0)

    def lease(self, trial_id: int) -> Lease | None:
        """The lease of ``trial_id``, or None if it holds none."""
        with self._session(write=False) as s:
            row = s.get(Q, int(trial_id))
            return None if row is None or row.owner is None else _lease(row)

    def leases(self) -> list[Lease]:
        """Every lease of the search, by trial id."""
        stmt = (select(Q).where(Q.search_id == self.search_id, Q.owner.is_not(None))
                .order_by(Q.trial_id))
        with self._session(write=False) as s:
            return [_lease(r) for r in s.scalars(stmt)]

    def expired(self, now: float | None = None) -> list[Lease]:
        """Leases whose last heartbeat is older than ``lease_seconds``."""
        now = time.time() if now is None else now
        stmt = (select(Q).where(Q.search_id == self.search_id, Q.owner.is_not(None),
                                Q.heartbeat_at < now - self.lease_seconds)
                .order_by(Q.trial_id))
        with self._session(write=False) as s:
            return [_lease(r) for r in s.scalars(stmt)]

    # ------------------------------------------------------------------ writing
    def push(self, trial_ids: Iterable[int], *, front: bool = False) -> None:
        """Append trials (or put them first). A trial already queued or leased is left as
        it is, so recovery may push freely."""
        ids = list(dict.fromkeys(int(t) for t in trial_ids))
        if not ids:
            return
        with self._session() as s:
            present = set(s.scalars(select(Q.trial_id).where(Q.trial_id.in_(ids))))
            base = time.time_ns()
            s.add_all([Q(trial_id=tid, search_id=self.search_id,
                         priority=_FRONT if front else _BACK, enqueued_ns=base + i)
                       for i, tid in enumerate(ids) if tid not in present])

    def claim(self, owner: str, slot: str, pid: int | None = None) -> Lease | None:
        """Lease the first waiting trial to ``owner`` (None if none waits).

        One statement: ``UPDATE ... WHERE trial_id = (SELECT ... FOR UPDATE SKIP LOCKED
        LIMIT 1) RETURNING ...``. On PostgreSQL ``SKIP LOCKED`` passes over rows another
        claimer holds, so two claimers never take the same trial and never wait on each
        other; on SQLite the write transaction serialises claimers. The statement itself also
        requires the search to be in :data:`CLAIMABLE_STATES`, so no claim succeeds once the
        daemon has written ``stopping`` (a warm stop) or any terminal state.
        """
        claimable = exists(select(S.id).where(S.id == self.search_id,
                                              S.state.in_(CLAIMABLE_STATES)))
        first = (select(Q.trial_id).where(Q.search_id == self.search_id, Q.owner.is_(None))
                 .order_by(Q.priority, Q.enqueued_ns, Q.trial_id)
                 .limit(1).with_for_update(skip_locked=True).scalar_subquery())
        now = time.time()
        holder = os.getpid() if pid is None else int(pid)
        stmt = (update(Q).where(Q.trial_id == first, Q.owner.is_(None), claimable)
                .values(owner=owner, slot=slot, pid=holder, claimed_at=now, heartbeat_at=now)
                .returning(Q.trial_id))
        with self._session() as s:
            tid = s.execute(stmt).scalar()
        return None if tid is None else Lease(int(tid), owner, slot, holder, now, now)

    def holds(self, trial_id: int, owner: str) -> bool:
        """Whether ``owner`` holds the lease of ``trial_id`` (one indexed lookup)."""
        stmt = select(Q.trial_id).where(Q.trial_id == int(trial_id), Q.owner == owner)
        with self._session(write=False) as s:
            return s.scalar(stmt) is not None

    def heartbeat(self, trial_id: int, owner: str | None = None) -> None:
        """Keep a lease alive. Raises LeaseLost when the trial holds no lease (of ``owner``,
        when given): it expired and was requeued, or the trial was finished elsewhere."""
        stmt = update(Q).where(Q.trial_id == int(trial_id), Q.owner.is_not(None))
        if owner is not None:
            stmt = stmt.where(Q.owner == owner)
        with self._session() as s:
            n = int(getattr(s.execute(stmt.values(heartbeat_at=time.time())), "rowcount", 0))
        if not n:
            raise LeaseLost(f"trial {trial_id}: its queue lease was revoked")

    def ack(self, trial_id: int) -> None:
        """Drop the entry of a trial that reached a terminal state."""
        with self._session() as s:
            s.execute(delete(Q).where(Q.trial_id == int(trial_id)))

    def release(self, trial_id: int, *, front: bool = True) -> None:
        """Give a leased trial back: it waits again (first in line by default)."""
        with self._session() as s:
            row = s.get(Q, int(trial_id), with_for_update=True)
            prio = _FRONT if front else _BACK
            if row is None:
                s.add(Q(trial_id=int(trial_id), search_id=self.search_id, priority=prio,
                        enqueued_ns=time.time_ns()))
                return
            row.owner = row.slot = row.pid = row.claimed_at = row.heartbeat_at = None
            row.priority, row.enqueued_ns = prio, time.time_ns()

    def discard(self, trial_ids: Iterable[int]) -> None:
        """Remove trials from the queue entirely (waiting or leased)."""
        ids = [int(t) for t in trial_ids]
        if not ids:
            return
        with self._session() as s:
            for i in range(0, len(ids), 500):
                s.execute(delete(Q).where(Q.trial_id.in_(ids[i:i + 500])))

    def repair(self) -> None:
        """Nothing to repair: every change is one transaction (kept for FileQueue parity)."""

    def release_owner(self, owner: str) -> list[int]:
        """Give back every lease of ``owner`` (a worker that stops), first in line; returns
        their trial ids, ascending."""
        with self._session() as s:
            ids = [int(t) for t in s.scalars(select(Q.trial_id).where(
                Q.search_id == self.search_id, Q.owner == owner)
                .order_by(Q.trial_id).with_for_update())]
            if ids:
                s.execute(update(Q).where(Q.trial_id.in_(ids)).values(
                    owner=None, slot=None, pid=None, claimed_at=None, heartbeat_at=None,
                    priority=_FRONT, enqueued_ns=time.time_ns()))
            return ids
