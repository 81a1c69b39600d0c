"""A file-locked trial queue in a search's run directory.

Layout under ``<run_dir>/queue``::

    queue.lock                          # filelock: every mutation holds it
    pending/<prio>-<ns>-<trial>.json    # waiting trials, claimed in name order
    leases/<trial>.json                 # claimed trials; the file's mtime is the heartbeat

Every mutation is a rename of a complete file (written to a temporary name, then renamed),
so a crash or ``kill -9`` at any instant leaves each trial either pending, leased or gone,
never half-written. Files are fsynced only with ``durable=True``: the daemon does not need
it, because the store is the source of truth and recovery rebuilds the queue from it after
a power loss, and an fsync per claim would cost milliseconds of scheduling latency. A claim writes the lease before it removes the pending entry;
a crash between the two leaves both, and :meth:`FileQueue.pending` hides a pending entry
whose trial holds a lease (:meth:`FileQueue.repair` deletes it).

The queue knows trial ids, owners and heartbeats, nothing else: the trial store is the
source of truth for trial states, and the daemon's recovery (``adsearch.daemon.recovery``)
decides what an expired lease means (requeue with ``attempts + 1``, or fail).

Leases: a worker that claims a trial calls :meth:`FileQueue.heartbeat` (an ``os.utime`` on
its lease file, no lock needed) every few seconds. A lease whose heartbeat is older than
``lease_seconds`` has expired: its worker or child died, or hangs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from adsearch.atomic import write_json_atomic
from adsearch.errors import DaemonError
from adsearch.queue.base import Lease, LeaseLost

#: Name prefixes of pending entries: ``front`` entries (requeued work) sort first.
_FRONT, _BACK = "0", "1"


class FileQueue:
    """A FIFO of trial ids with leases, shared safely by processes on one machine (the
    :class:`~adsearch.queue.base.Queue` contract).

    Args:
        root: directory of the queue (created if missing), usually ``<run_dir>/queue``.
        lease_seconds: a lease without a heartbeat for this long has expired.
        lock_timeout: seconds to wait for the queue lock before raising DaemonError.
        durable: fsync every file written (survives power loss, costs latency).
    """

    def __init__(self, root: str | os.PathLike[str], *, lease_seconds: float = 60.0,
                 lock_timeout: float = 30.0, durable: bool = False) -> None:
        self.root = Path(root)
        self.durable = durable
        self.lease_seconds = float(lease_seconds)
        self._pending = self.root / "pending"
        self._leases = self.root / "leases"
        self._pending.mkdir(parents=True, exist_ok=True)
        self._leases.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.root / "queue.lock"), timeout=lock_timeout)

    # ------------------------------------------------------------------ locking
    def _acquire(self) -> Any:
        try:
            return self._lock.acquire()
        except Timeout:
            raise DaemonError(
                f"queue lock {self.root / 'queue.lock'} is held by another process for more "
                f"than {self._lock.timeout:.0f} s; check for a hung adsearch process"
            ) from None

    # ------------------------------------------------------------------ reading
    def _pending_entries(self) -> list[tuple[str, int]]:
        out = []
        for name in os.listdir(self._pending):
            if name.startswith(".") or not name.endswith(".json"):
                continue
            try:
                out.append((name, int(name[:-5].rsplit("-", 1)[1])))
            except (IndexError, ValueError):
                continue
        out.sort()
        return out

    def _lease_ids(self) -> set[int]:
        ids = set()
        for name in os.listdir(self._leases):
            if name.endswith(".json") and not name.startswith("."):
                try:
                    ids.add(int(name[:-5]))
                except ValueError:
                    continue
        return ids

    def pending(self) -> list[int]:
        """Waiting trial ids in claim order (trials holding a lease are not listed)."""
        leased = self._lease_ids()
        seen: set[int] = set()
        out = []
        for _, tid in self._pending_entries():
            if tid not in leased and tid not in seen:
                seen.add(tid)
                out.append(tid)
        return out

    def __len__(self) -> int:
        return len(self.pending())

    def lease(self, trial_id: int) -> Lease | None:
        """The lease of ``trial_id``, or None if it holds none."""
        path = self._leases / f"{trial_id}.json"
        try:
            st = path.stat()
            data = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return Lease(
            trial_id=int(data["trial_id"]), owner=str(data["owner"]), slot=str(data["slot"]),
            pid=int(data.get("pid", 0)), claimed_at=float(data["claimed_at"]),
            heartbeat_at=st.st_mtime,
        )

    def leases(self) -> list[Lease]:
        out = []
        for tid in sorted(self._lease_ids()):
            lease = self.lease(tid)
            if lease is not None:
                out.append(lease)
        return out

    def expired(self, now: float | None = None) -> list[Lease]:
        """Leases whose last heartbeat is older than ``lease_seconds``."""
        now = time.time() if now is None else now
        return [le for le in self.leases() if le.expired(now, self.lease_seconds)]

    # ------------------------------------------------------------------ writing
    def push(self, trial_ids: Iterable[int], *, front: bool = False) -> None:
        """Append trials (or put them first, for requeued work). Pushing a trial that is
        already pending or leased is a no-op, so recovery may push freely."""
        ids = [int(t) for t in trial_ids]
        if not ids:
            return
        with self._acquire():
            present = set(self.pending()) | self._lease_ids()
            prio = _FRONT if front else _BACK
            for tid in ids:
                if tid in present:
                    continue
                present.add(tid)
                name = f"{prio}-{time.time_ns():020d}-{tid}.json"
                write_json_atomic(self._pending / name, {"trial_id": tid, "pushed_at": time.time()},
                                  durable=self.durable)

    def claim(self, owner: str, slot: str, pid: int | None = None) -> Lease | None:
        """Take the first pending trial and lease it to ``owner`` (None if none waits)."""
        with self._acquire():
            leased = self._lease_ids()
            for name, tid in self._pending_entries():
                if tid in leased:
                    (self._pending / name).unlink(missing_ok=True)
                    continue
                now = time.time()
                holder = os.getpid() if pid is None else int(pid)
                data = {"trial_id": tid, "owner": owner, "slot": slot, "pid": holder,
                        "claimed_at": now}
                write_json_atomic(self._leases / f"{tid}.json", data, durable=self.durable)
                (self._pending / name).unlink(missing_ok=True)
                return Lease(tid, owner, slot, holder, now, now)
        return None

    def holds(self, trial_id: int, owner: str) -> bool:
        """Whether ``owner`` holds the lease of ``trial_id``."""
        lease = self.lease(trial_id)
        return lease is not None and lease.owner == owner

    def heartbeat(self, trial_id: int, owner: str | None = None) -> None:
        """Keep a lease alive (an ``os.utime`` of its file; without ``owner``, no lock).
        Raises LeaseLost when the lease no longer exists, or is not ``owner``'s."""
        if owner is None:
            try:
                os.utime(self._leases / f"{trial_id}.json")
            except FileNotFoundError:
                raise LeaseLost(f"trial {trial_id}: its queue lease was revoked") from None
            return
        with self._acquire():  # the owner read and the utime, with no release between
            if not self.holds(trial_id, owner):
                raise LeaseLost(f"trial {trial_id}: its queue lease was revoked")
            os.utime(self._leases / f"{trial_id}.json")

    def ack(self, trial_id: int) -> None:
        """Drop the lease (and any pending entry) of a trial that reached a terminal state."""
        with self._acquire():
            (self._leases / f"{trial_id}.json").unlink(missing_ok=True)
            for name, tid in self._pending_entries():
                if tid == trial_id:
                    (self._pending / name).unlink(missing_ok=True)

    def release(self, trial_id: int, *, front: bool = True) -> None:
        """Give a leased trial back: it becomes pending again (first in line by default)."""
        with self._acquire():
            self._release(trial_id, front)

    def _release(self, trial_id: int, front: bool) -> None:
        present = {tid for _, tid in self._pending_entries()}
        if trial_id not in present:
            prio = _FRONT if front else _BACK
            name = f"{prio}-{time.time_ns():020d}-{trial_id}.json"
            write_json_atomic(self._pending / name,
                              {"trial_id": trial_id, "pushed_at": time.time()},
                              durable=self.durable)
        (self._leases / f"{trial_id}.json").unlink(missing_ok=True)

    def release_owner(self, owner: str) -> list[int]:
        """Give back every lease of ``owner`` (a worker that stops), first in line; returns
        their trial ids, ascending."""
        with self._acquire():
            ids = [le.trial_id for le in self.leases() if le.owner == owner]
            for tid in ids:
                self._release(tid, True)
            return ids

    def discard(self, trial_ids: Iterable[int]) -> None:
        """Remove trials from the queue entirely (pending entries and leases)."""
        drop = {int(t) for t in trial_ids}
        if not drop:
            return
        with self._acquire():
            for name, tid in self._pending_entries():
                if tid in drop:
                    (self._pending / name).unlink(missing_ok=True)
            for tid in drop:
                (self._leases / f"{tid}.json").unlink(missing_ok=True)

    def repair(self) -> None:
        """Remove duplicate pending entries and pending entries of leased trials, and stray
        temporary files left by a crash mid-write."""
        with self._acquire():
            leased = self._lease_ids()
            seen: set[int] = set()
            for name, tid in self._pending_entries():
                if tid in leased or tid in seen:
                    (self._pending / name).unlink(missing_ok=True)
                seen.add(tid)
            for d in (self._pending, self._leases):
                for name in os.listdir(d):
                    if name.startswith("."):
                        (d / name).unlink(missing_ok=True)
