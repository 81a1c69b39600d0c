"""``adsearch worker``: run a search's children on a host without Ray, fed by the database queue.

A host worker serves one search whose store is PostgreSQL. The daemon (on some host) draws
trials and pushes them to the queue rows of the store (:class:`~adsearch.queue.dbqueue.DbQueue`);
any number of workers on any number of hosts claim them (``FOR UPDATE SKIP LOCKED``, so
never twice), run each one as a child process exactly as the local executor does
(:class:`~adsearch.daemon.slots.ChildProcess`, the same slots, ``CUDA_VISIBLE_DEVICES`` and
thread split), renew their leases, and write results to the same store. The daemon picks the
results up from the store and feeds the controller.

Same failure semantics as the local executor:

- bad patterns are results (``done`` with the failure reward), never retried;
- a child that dies without a result is retried (``attempts + 1``, up to ``max_attempts``);
- a worker that dies (``kill -9``, a lost host) stops renewing its leases; the daemon finds
  the expired leases and requeues those trials, so none is lost;
- a data/config error (the host lacks the data) requeues the trial uncounted and stops
  this worker with the message: other hosts may be fine;
- a code error (:func:`adsearch.daemon.failures.classify` says ``"error"``) requeues the
  trial uncounted and fails the search: every host would fail alike. The daemon sees the
  state, stops, and its failure breaker counts the results workers store.

Workers claim only while the search is ``running`` (a warm ``adsearch stop`` stops new
work on every host) and exit when it is finished or failed.

Loop shape as huey/rq workers: :meth:`HostWorker.initialize`, :meth:`HostWorker.loop`,
:meth:`HostWorker.shutdown`; signal handlers only call :meth:`HostWorker.request_stop`
(first: warm, finish running children; second: cold, kill them and requeue). ``burst``
exits once the queue is empty and nothing runs (tests, benchmarks, batch jobs).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

from adsearch.daemon.config import SearchConfig
from adsearch.daemon.executors import LocalExecutor
from adsearch.daemon.pruning import Scheduler
from adsearch.daemon.recovery import Outcome, outcome_from_doc
from adsearch.daemon.rundir import RunDir
from adsearch.daemon.settle import interrupt, settle
from adsearch.daemon.slots import RunningChild, Slot, plan_slots
from adsearch.daemon.slotset import SlotSet, child_spec
from adsearch.daemon.stopping import COLD, Stoppable
from adsearch.errors import ConfigError, DaemonError, StoreError

if TYPE_CHECKING:
    from adsearch.queue.base import Queue
    from adsearch.store.records import TrialRecord

log = logging.getLogger("adsearch.worker")

_CHECK_SEARCH_S = 2.0  # how often the search's state is read


class HostWorker(Stoppable):
    """Claims trials of one search from the database queue and runs them in local slots.

    Args:
        store_url: the search's store (``postgresql+psycopg://...``).
        search: the search name.
        gpus / slots_per_gpu / workers: this host's slots, as for ``adsearch start``.
        work_dir: where trial specs, results and logs go (``./adsearch-worker/SEARCH``).
        burst: exit when the queue is empty and no child runs.
        inline: run synthetic-task children in this process (no subprocess): for claim
            throughput tests and benchmarks only; refused for any other task.
        owner: lease owner name (default ``worker-HOST-PID``).
    """

    def __init__(self, store_url: str, search: str, *, gpus: list[str] | None = None,
                 slots_per_gpu: int = 1, workers: int | None = None,
                 work_dir: str | os.PathLike[str] | None = None, burst: bool = False,
                 inline: bool = False, owner: str | None = None) -> None:
        from adsearch.queue.dbqueue import default_owner

        self.store_url = store_url
        self.search_name = search
        self._slot_args = {"gpus": gpus, "slots_per_gpu": slots_per_gpu, "workers": workers}
        self.run = RunDir(Path(work_dir) if work_dir else Path("adsearch-worker") / search)
        self.burst = burst
        self.inline = inline
        self.owner = owner or default_owner("worker")
        self.executor = LocalExecutor()  # children are subprocesses of this worker
        # the slots' children and heartbeats; a lease the daemon took back kills its child
        self.slotset = SlotSet(self, self.owner, owner_checked=True)
        self.stop_level = 0
        self.stop_reason = ""
        self.error: str | None = None  # why this worker stopped on its own (exit status 1)
        self.claimed: list[int] = []  # every trial id this worker claimed, in order
        self.finished = 0
        self.idle = False  # the last pass found the queue empty
        self.search_state = ""  # as last read from the store (re-read every 2 s)
        self._last_check = 0.0

    @property
    def children(self) -> dict[int, RunningChild]:
        """Running children by slot index (the :class:`~adsearch.daemon.slotset.SlotSet`'s)."""
        return self.slotset.children

    @children.setter
    def children(self, value: dict[int, RunningChild]) -> None:
        self.slotset.children = value

    @property
    def _claimed_at(self) -> dict[int, float]:
        """Trial id -> when this worker leased it (the slot set's)."""
        return self.slotset.claimed_at

    # ------------------------------------------------------------------ initialize
    def initialize(self) -> None:
        """Open the store, check the search and this host's slots."""
        from adsearch.queue.dbqueue import DbQueue
        from adsearch.store import Store
        from adsearch.store.engine import parse_url
        from adsearch.tasks import get_task, load_config

        if parse_url(self.store_url).get_backend_name() != "postgresql":
            raise ConfigError(
                "--store: adsearch worker needs a PostgreSQL store (the queue of a SQLite store "
                "lives in files on the daemon's host); move the search with `adsearch db copy "
                "SRC postgresql+psycopg://...` and resume it there"
            )
        self.store = Store(self.store_url)
        try:
            search = self.store.get_search(self.search_name)
            if search.state in ("finished", "failed"):
                raise DaemonError(f"search {self.search_name!r} is {search.state}: nothing to run")
            self.search_id = search.id
            self.search_state = search.state
            self.cfg = SearchConfig.from_dict(search.config)
            if self.inline and self.cfg.task != "synthetic":
                raise ConfigError(f"--inline runs synthetic-task children only; search "
                                  f"{self.search_name!r} runs task {self.cfg.task}")
            self.task = get_task(self.cfg.task)
            self.task_config = load_config(self.task, self.cfg.task, self.cfg.task_config)
            self.slots, self.slot_source = plan_slots(**self._slot_args)  # type: ignore[arg-type]
            self.queue: Queue = DbQueue(self.store, self.search_id,
                                        lease_seconds=self.cfg.lease_seconds)
            self.scheduler = Scheduler(self.cfg, self.store_url)
        except BaseException:
            self.store.close()
            raise
        self.store.log_event(self.search_id, "worker.start",
                             f"{self.owner} serves {len(self.slots)} slot(s), {self.slot_source}",
                             {"owner": self.owner, "slots": [s.to_dict() for s in self.slots]})
        log.info("%s: search %s, %d slot(s) (%s)", self.owner, self.search_name,
                 len(self.slots), self.slot_source)

    # ------------------------------------------------------------------ the loop
    def loop(self, now: float) -> bool:
        """One pass; returns False when the worker should exit."""
        if self.stop_level >= COLD:
            return False
        self._reap(now)
        self._heartbeat(now)
        if now - self._last_check >= _CHECK_SEARCH_S:
            self._last_check = now
            state = self.search_state = self.store.get_search_by_id(self.search_id).state
            if state in ("finished", "failed") and not self.stop_level:
                self.request_stop(reason=f"search {state}")
        serving = self.search_state == "running"  # stopped: no new work until a resume
        self.idle = self.idle or not serving
        if not self.stop_level and serving:
            if self.inline:
                return self._run_inline()
            for slot in self.slots:
                if slot.index not in self.children and not self._start(slot):
                    break
        if self.children:
            return True
        if self.stop_level:
            return False
        return not (self.burst and (not serving or len(self.queue) == 0))

    def _claim(self, slot: Slot) -> tuple[TrialRecord, int] | None:
        got = self.slotset.claim(slot)
        if got is not None:
            self.claimed.append(got[0].id)
            log.debug("%s claimed trial %d", self.owner, got[0].id)
        return got

    def _start(self, slot: Slot) -> bool:
        """Claim a trial for ``slot`` and spawn its child. False: the queue is empty."""
        got = self._claim(slot)
        if got is None:
            return False
        trial, attempt = got
        self.slotset.stage(slot, trial, attempt)
        try:
            child = self.slotset.start(slot)
        except StoreError:  # someone else moved it (it was discarded as stale): child killed
            return True
        self._placed(trial.id, attempt, slot, str(child.log_path))
        return True

    def _placed(self, trial_id: int, attempt: int, slot: Slot, log_path: str) -> None:
        """Record where a trial runs (this host, slot and log file): the store's trial row
        keeps only the slot index, and the log lives on this host, not the daemon's."""
        host = socket.gethostname()
        self.store.log_event(self.search_id, "trial.placed",
                             f"trial {trial_id} attempt {attempt} runs on {self.owner} slot "
                             f"{slot.name} (log {host}:{log_path})",
                             {"trial_id": trial_id, "attempt": attempt, "host": host,
                              "owner": self.owner, "slot": slot.name, "log": log_path})

    def _run_inline(self) -> bool:
        """Claim and run one synthetic child in this process. False: nothing left (burst)."""
        from adsearch.daemon.child import run as run_child

        slot = self.slots[0]
        got = self._claim(slot)
        self.idle = got is None
        if got is None:
            return not self.burst
        trial, attempt = got
        try:
            self.slotset.mark_running(trial, attempt, slot, os.getpid())
        except StoreError:  # someone else moved it (it was discarded as stale)
            return True
        doc = run_child(child_spec(self, trial, attempt, slot))
        self._settle(trial.id, attempt, outcome_from_doc(doc), 0, None, "")
        return True

    # ------------------------------------------------------------------ reaping
    def _reap(self, now: float) -> None:
        for _, child, code, outcome in self.slotset.reap(now):
            self._settle(child.trial_id, child.attempt, outcome, code, child.kill_reason,
                         str(child.log_path))

    def _settle(self, trial_id: int, attempt: int, outcome: Outcome | None, code: int,
                kill_reason: str | None, log_path: str) -> None:
        """Store a result, or requeue / fail the trial (the daemon's own rules)."""
        claimed_at = self.slotset.ended(trial_id)
        # A lease younger than half its life cannot have expired, and only an expired lease
        # is ever taken away: skip the lookup then (it matters for short children).
        fresh = time.time() - claimed_at < self.cfg.lease_seconds / 2
        if not fresh and not self.queue.holds(trial_id, self.owner):
            log.warning("trial %d: lease lost before the child ended; result dropped", trial_id)
            return
        try:
            done = settle(self.store, self.queue, self.cfg, self.search_id, trial_id, outcome,
                          code, kill_reason, log_path, where=f" on {self.owner}")
        except StoreError as exc:  # the daemon ended the trial meanwhile (e.g. stale at the budget)
            log.warning("trial %d: result not stored: %s", trial_id, exc)
            return
        if done.kind == "result":
            self.finished += 1
        elif done.kind in ("config", "error"):
            if done.kind == "config":  # this host's data or config: others may be fine
                self.error = (f"trial {trial_id} hit a data/config error on this host: "
                              f"{done.reason}; fix this host's data or config (log: {log_path})")
            else:  # a bug in the code fails alike everywhere: fail the search (the daemon stops)
                self.error = (f"trial {trial_id} stopped the search: its code raised "
                              f"{done.reason} on {self.owner}; that is a bug in the task or "
                              "your code, not a result of the pattern: fix it, then `adsearch "
                              f"resume` (log: {log_path})")
                self.store.set_search_state(self.search_id, "failed")
            what = "config" if done.kind == "config" else "code"
            self.store.log_event(self.search_id, f"worker.{what}_error", self.error,
                                 {"trial_id": trial_id, "owner": self.owner, "log": log_path})
            self.request_stop(reason=f"{what}-error")

    def _heartbeat(self, now: float) -> None:
        """Renew the leases of this worker's children; a lease the daemon took back (it
        expired) kills its child: the trial is someone else's now."""
        self.slotset.heartbeat(now)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        """Kill running children (cold stop) and requeue their trials uncounted; give back
        every lease this worker still holds; close the store."""
        try:
            for child in self.slotset.drain():
                interrupt(self.store, self.queue, self.run, self.cfg, child,
                          f"{self.owner} stopped")
            self.queue.release_owner(self.owner)
            self.store.log_event(self.search_id, "worker.stop",
                                 f"{self.owner} stopped ({self.stop_reason or 'done'}): "
                                 f"{self.finished} trial(s) finished",
                                 {"owner": self.owner, "finished": self.finished})
        finally:
            self.store.close()


def run_worker(worker: HostWorker, *, tick: float = 0.2) -> HostWorker:
    """Run ``worker`` until it exits, with the daemon's signal handling (SIGTERM/SIGINT:
    warm stop, twice: cold; SIGUSR1: cold). Returns the worker (``error`` says why it
    stopped on its own)."""
    import selectors

    from adsearch.daemon.runner import install_signal_handlers, wait_for_children

    wake, restore = install_signal_handlers(worker)
    try:
        worker.initialize()
        sel = selectors.DefaultSelector()
        sel.register(wake, selectors.EVENT_READ)
        try:
            while worker.loop(time.time()):
                if worker.inline and not worker.idle and not worker.stop_level:
                    continue
                wait_for_children(worker.children, sel, wake, tick)
        finally:
            worker.shutdown()
            sel.close()
    finally:
        restore()
    return worker
