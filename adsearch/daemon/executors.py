"""Executors (where children run) and the queue that matches the store.

One interface, two executors:

- ``local`` (default): each child is a subprocess of the daemon
  (:class:`~adsearch.daemon.slots.ChildProcess`), in the daemon's own slots;
- ``ray``: each child is a Ray task that asks for ``ray_gpus`` GPUs (fractions allowed);
  the daemon is the Ray driver (:mod:`adsearch.daemon.rayexec`). Ray retries a child whose
  worker or node died; an exception of the child itself is classified by the child
  (:mod:`adsearch.daemon.failures`), never retried by Ray.

:meth:`Executor.launch` returns a handle with the interface of ``ChildProcess``
(``poll``, ``reap``, ``kill``, ``timed_out``, ``fileno``/``has_fd``, ``trial_id``,
``attempt``, ``pid``, ``started_at``, ``kill_reason``, ``log_path``), so the daemon's slot
logic, results, retries and recovery are the same for both.

The queue follows the store: a SQLite store keeps the file queue of the run directory (one
host); a PostgreSQL store keeps the queue as rows (:class:`~adsearch.queue.dbqueue.DbQueue`),
which ``adsearch worker`` processes on other hosts claim from too. Their results reach the
store directly; the daemon collects them for its controller each pass
(:meth:`~adsearch.daemon.slotset.SlotsMixin._collect_finished`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from adsearch.daemon.config import EXECUTORS, SearchConfig
from adsearch.daemon.recovery import reconcile
from adsearch.daemon.rundir import RunDir
from adsearch.daemon.slots import ChildProcess, RunningChild, Slot

if TYPE_CHECKING:
    from adsearch.queue.base import Queue
    from adsearch.store import Store

log = logging.getLogger("adsearch.daemon")

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "make_executor", "open_queue",
           "uses_db_queue"]


class Executor(Protocol):
    """Starts children; the handles it returns behave like :class:`ChildProcess`."""

    name: str

    def launch(self, slot: Slot, trial_id: int, spec_path: Path, result_path: Path,
               log_path: Path, timeout: float, attempt: int) -> RunningChild: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Children as subprocesses of the daemon (today's behaviour)."""

    name = "local"

    def launch(self, slot: Slot, trial_id: int, spec_path: Path, result_path: Path,
               log_path: Path, timeout: float, attempt: int) -> ChildProcess:
        return ChildProcess(slot, trial_id, spec_path, result_path, log_path, timeout,
                            attempt=attempt)

    def describe(self) -> str:
        return "local subprocesses"

    def close(self) -> None:
        """Nothing to release."""


def make_executor(cfg: SearchConfig) -> Executor:
    """The executor ``cfg.executor`` names (Ray is imported only for ``ray``)."""
    if cfg.executor == "ray":
        from adsearch.daemon.rayexec import RayExecutor

        return RayExecutor(cfg)
    return LocalExecutor()


def uses_db_queue(store_url: str) -> bool:
    """A PostgreSQL store holds the queue as rows (many hosts); SQLite keeps the file queue."""
    from adsearch.store.engine import parse_url

    return parse_url(store_url).get_backend_name() == "postgresql"


def open_queue(store: Store, run: RunDir, cfg: SearchConfig, search_id: int,
               store_url: str) -> tuple[Queue, dict[str, int]]:
    """The search's queue, reconciled with the store after whatever happened before.
    ``store`` is the concrete :class:`~adsearch.store.Store` (the database queue runs its
    transactions in the store's session helper).

    Returns:
        ``(queue, recovery counts)``.
    """
    if not uses_db_queue(store_url):
        from adsearch.queue import FileQueue

        queue = FileQueue(run.queue_dir, lease_seconds=cfg.lease_seconds)
        return queue, reconcile(store, queue, run, cfg, search_id)
    from adsearch.queue.dbqueue import DbQueue

    dbq = DbQueue(store, search_id, lease_seconds=cfg.lease_seconds)
    return dbq, reconcile(store, dbq, run, cfg, search_id, shared=True)
