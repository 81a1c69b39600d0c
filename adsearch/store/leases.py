"""Daemon-lease methods of :class:`~adsearch.store.Store`: the store knows its search's daemon.

A run directory's ``daemon.lock`` keeps two daemons out of one directory, but a search can be
reached from two directories (a copied run directory whose ``search.json`` names the
original store): only the store is shared by every way in. So a daemon also holds one row of
``daemon_leases`` for its search while it runs (revision 0006):

- :meth:`LeaseMethods.acquire_daemon_lease` inserts the row, or takes it over when the
  caller's ``alive`` rule says its holder is dead, in one transaction that locks the search
  row (so of two daemons starting at once one gets it); it returns the live holder otherwise;
- :meth:`LeaseMethods.renew_daemon_lease` moves the heartbeat (the daemon calls it every
  ``heartbeat_seconds``) and tells the daemon when another one took the row over;
- :meth:`LeaseMethods.release_daemon_lease` deletes the row when the daemon exits.

Whether a holder is alive is the daemon layer's rule (:mod:`adsearch.daemon.lease`): the
process identity on the same host, the heartbeat's age on another.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select, update

from adsearch.errors import StoreError
from adsearch.store.base import StoreCore
from adsearch.store.models import DaemonLeaseModel, SearchModel
from adsearch.store.retry import retrying_methods


@dataclass(frozen=True)
class DaemonLease:
    """Who runs a search: ``owner`` (unique per daemon start), ``host``, ``pid``, ``ident``
    (the process identity), ``run_dir``, and ``started_at``/``heartbeat_at`` (seconds since
    the epoch)."""

    search_id: int
    owner: str
    host: str
    pid: int
    ident: str
    run_dir: str
    started_at: float
    heartbeat_at: float


def _record(row: DaemonLeaseModel) -> DaemonLease:
    return DaemonLease(row.search_id, row.owner, row.host, row.pid, row.ident, row.run_dir,
                       row.started_at, row.heartbeat_at)


@retrying_methods  # a lost connection costs a retry (each method is one idempotent statement set)
class LeaseMethods(StoreCore):
    """Daemon-lease half of the store."""

    def acquire_daemon_lease(self, lease: DaemonLease,
                             alive: Callable[[DaemonLease], bool]) -> DaemonLease | None:
        """Make ``lease`` the search's daemon unless a live one holds it.

        Returns None when ``lease`` now holds the row (it was free, held by ``lease.owner``
        already, or held by a daemon that ``alive`` says is dead), else the live holder,
        untouched.

        Raises:
            StoreError: unknown search, or a database error.
        """
        with self._session() as s:
            found = s.execute(select(SearchModel.id).where(SearchModel.id == lease.search_id)
                              .with_for_update()).scalar_one_or_none()
            if found is None:
                raise StoreError(f"acquire_daemon_lease: no search with id {lease.search_id}")
            row = s.get(DaemonLeaseModel, lease.search_id)
            if row is not None and row.owner != lease.owner and alive(_record(row)):
                return _record(row)
            if row is not None:
                s.delete(row)
                s.flush()
            s.add(DaemonLeaseModel(
                search_id=lease.search_id, owner=lease.owner, host=lease.host, pid=lease.pid,
                ident=lease.ident, run_dir=lease.run_dir, started_at=lease.started_at,
                heartbeat_at=lease.heartbeat_at))
        return None

    def renew_daemon_lease(self, search_id: int, owner: str, now: float | None = None) -> bool:
        """Move the heartbeat of ``owner``'s lease to ``now``. False: ``owner`` does not hold
        the search's lease any more (another daemon took it over)."""
        with self._session() as s:
            res = s.execute(update(DaemonLeaseModel)
                            .where(DaemonLeaseModel.search_id == search_id,
                                   DaemonLeaseModel.owner == owner)
                            .values(heartbeat_at=time.time() if now is None else now))
            return int(getattr(res, "rowcount", 0)) == 1

    def release_daemon_lease(self, search_id: int, owner: str) -> None:
        """Delete ``owner``'s lease of the search (a lease someone else holds stays)."""
        with self._session() as s:
            s.execute(delete(DaemonLeaseModel).where(DaemonLeaseModel.search_id == search_id,
                                                     DaemonLeaseModel.owner == owner))

    def daemon_lease(self, search_id: int) -> DaemonLease | None:
        """The search's lease row, live or not (None: no daemon holds it)."""
        with self._session(write=False) as s:
            row = s.get(DaemonLeaseModel, search_id)
            return _record(row) if row is not None else None
