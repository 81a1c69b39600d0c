"""The daemon's lease in the store: one live daemon per search, whatever directory it is
reached from (issue 23 §2). No torch here.

``daemon.lock`` in the run directory keeps a second daemon out of *that directory*. A copy of
the directory (whose ``search.json`` names the original store when its ``adsearch.db`` is
missing) has a lock of its own, and resuming from it started a second daemon on the same
store: two controllers, and one requeued a trial the other was running. So the daemon also
holds the search's row of ``daemon_leases`` (:mod:`adsearch.store.leases`) from start to exit,
and renews its heartbeat every ``heartbeat_seconds``.

The holder of a lease is alive (:func:`holder_alive`):

- on this host: while a process with its pid and its process identity (boot id and start
  time, :func:`~adsearch.daemon.rundir.process_identity`) runs, so a daemon killed with
  ``kill -9`` frees it at once, and a process that merely reuses its pid does not hold it.
  A lease held by this very process under another owner is an abandoned daemon object of
  this process (a process runs one daemon at a time; tests drop one to emulate a crash);
- on another host: while its heartbeat is younger than ``lease_seconds``.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import TYPE_CHECKING

from adsearch.daemon.rundir import process_identity
from adsearch.store.leases import DaemonLease

if TYPE_CHECKING:
    from adsearch.store.contract import StoreContract


def host_name() -> str:
    """This host's name, as leases record it."""
    return socket.gethostname()


def new_lease(search_id: int, run_dir: str) -> DaemonLease:
    """A lease for this process's daemon of ``search_id``, started from ``run_dir``."""
    pid = os.getpid()
    now = time.time()
    return DaemonLease(search_id=search_id, owner=f"{host_name()}:{pid}:{uuid.uuid4().hex[:12]}",
                       host=host_name(), pid=pid, ident=process_identity(pid) or f"pid:{pid}",
                       run_dir=run_dir, started_at=now, heartbeat_at=now)


def holder_alive(lease: DaemonLease, lease_seconds: float, now: float | None = None) -> bool:
    """Whether the daemon that holds ``lease`` still runs (the rule in the module docstring)."""
    if lease.host == host_name():
        if lease.pid == os.getpid():
            return False
        return process_identity(lease.pid) == lease.ident
    return (time.time() if now is None else now) - lease.heartbeat_at < lease_seconds


def held_elsewhere(name: str, holder: DaemonLease, now: float | None = None) -> str:
    """Why a second daemon of search ``name`` may not start: who runs it, and from where."""
    age = (time.time() if now is None else now) - holder.heartbeat_at
    where = "this host" if holder.host == host_name() else f"host {holder.host}"
    return (f"search {name!r} already has a live daemon: pid {holder.pid} on {where}, started "
            f"from the run directory {holder.run_dir} (heartbeat {age:.0f} s ago); a search "
            "runs under one daemon, whatever directory it is reached from: watch or stop it "
            f"there (`adsearch status {name} --run-dir {holder.run_dir}`, `adsearch stop "
            f"{name} --run-dir {holder.run_dir}`)")


def live_holder(store: StoreContract, search_id: int,
                lease_seconds: float) -> DaemonLease | None:
    """The live daemon of a search according to its store, or None (for ``status``)."""
    lease = store.daemon_lease(search_id)
    if lease is None or not holder_alive(lease, lease_seconds):
        return None
    return lease
