"""The slot workers of the daemon: claim, prepare, start, watch and reap child processes.

Each slot holds at most one running child and one *prepared* trial: while a child runs, its
slot already claims (leases) the next trial and writes its spec, so when the child exits the
next one starts at once, before the finished trial's result is even stored. A prepared trial
stays ``queued`` in the store; its lease is renewed like a running one's, and it is given
back to the queue (first in line) on any stop.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from adsearch.daemon.recovery import Outcome, claim_queued, read_outcome, recover_lease
from adsearch.daemon.rundir import RunDir, write_json_atomic
from adsearch.daemon.settle import interrupt, requeue_uncounted, settle
from adsearch.daemon.slots import RunningChild, Slot, ended_children
from adsearch.daemon.stopping import Stoppable
from adsearch.errors import StoreError

if TYPE_CHECKING:
    from adsearch.daemon.config import SearchConfig
    from adsearch.daemon.executors import Executor
    from adsearch.daemon.failures import FailureBreaker
    from adsearch.daemon.pruning import Scheduler
    from adsearch.queue.base import Queue
    from adsearch.store.contract import StoreContract
    from adsearch.store.records import TrialRecord


class SpecOwner(Protocol):
    """Whoever writes a child's spec: the daemon or an ``adsearch worker``."""

    cfg: SearchConfig
    scheduler: Scheduler


def child_spec(owner: SpecOwner, trial: TrialRecord, attempt: int,
               slot: Slot) -> dict[str, Any]:
    """The spec document of one child run (see :mod:`adsearch.daemon.child`). ``owner`` is
    the daemon or an ``adsearch worker``: its ``cfg``, ``scheduler``, ``search_id``. The
    budget carries the rung schedule, the store URL and the trial id (early stopping); a
    re-check trial (``purpose == "recheck"``) gets the full budget and no rungs."""
    full = trial.purpose == "recheck"
    return {"trial_id": trial.id, "attempt": attempt, "task": owner.cfg.task,
            "task_config": owner.cfg.task_config, "patterns": trial.pattern,
            "budget": owner.scheduler.budget(trial.id, rungs=not full), "device": slot.device,
            "seed": trial.seed, "threads": slot.threads, "space": owner.cfg.space}


log = logging.getLogger("adsearch.daemon")


class WorkerMixin(Stoppable):
    """Child management for :class:`~adsearch.daemon.loop.Daemon` (which holds the state)."""

    # state and collaborators provided by Daemon
    children: dict[int, RunningChild]
    prepared: dict[int, tuple[TrialRecord, int]]
    _beats: dict[int, float]
    slots: list[Slot]
    active: set[int]
    unconsumed: list[int]
    recheck_ids: set[int]  # re-check trials: their results never reach the controller
    latencies: list[float]
    busy: dict[int, float]
    _freed_at: dict[int, float]
    _last_lease_scan: float
    _owner: str
    store: StoreContract
    queue: Queue
    run: RunDir
    cfg: SearchConfig
    search_id: int
    fatal: str | None
    breaker: FailureBreaker  # stops a search that only fails
    scheduler: Scheduler  # each child's budget and rungs
    executor: Executor  # local subprocesses or Ray tasks
    #: The failure breaker tripped: no trial is recorded from then on (see :meth:`_observe`).
    tripped: bool = False

    # ------------------------------------------------------------------ reaping
    def _reap(self, now: float) -> None:
        for index, child, code in ended_children(self.children, now):
            end = time.time()
            self.busy[index] = self.busy.get(index, 0.0) + (end - child.started_at)
            outcome = read_outcome(self.run, child.trial_id, child.attempt)
            self._freed_at[index] = outcome.ended_at if outcome and outcome.ended_at else end
            if not self.stop_level and index in self.prepared:
                self._start(self.slots[index])  # the slot's next child first, bookkeeping after
            self._settle(child, code, outcome)

    def _settle(self, child: RunningChild, code: int, outcome: Outcome | None) -> None:
        """Store a finished child's result, or requeue / fail its trial (:func:`settle`);
        stop the search on a code error (not a result) or when the failure breaker trips."""
        self._beats.pop(child.trial_id, None)
        log_path = str(child.log_path)
        if self.tripped:  # ended in the same pass as the failure that tripped the breaker
            requeue_uncounted(self.store, self.queue, child.trial_id, "not recorded: the "
                              "failure breaker had stopped the search; requeued")
            return
        done = settle(self.store, self.queue, self.cfg, self.search_id, child.trial_id,
                      outcome, code, child.kill_reason, log_path)
        if done.kind == "result" and outcome is not None:
            self.active.discard(child.trial_id)
            if child.trial_id not in self.recheck_ids:
                self.unconsumed.append(child.trial_id)
            self._observe(outcome.status != "ok", outcome.error, log_path, child.trial_id)
        elif done.kind in ("config", "error"):
            self._stop_failed(child.trial_id, done.kind, done.reason or "", log_path)
        elif done.kind == "failed":
            self.active.discard(child.trial_id)
            self._observe(True, done.reason, log_path, child.trial_id)

    def _observe(self, failed: bool, error: str | None, log_path: str | None,
                 trial_id: int | None = None) -> None:
        """Feed the failure breaker one ended trial; stop the search when it trips.

        The count is exact: ``--max-consecutive-failures 3`` records 3 failed trials. The
        trip is a cold stop: children still running are killed and their trials requeued
        uncounted, and so is a child that ended in the same pass (:meth:`_settle`), so the
        trial that tripped the breaker is the last one recorded. (Trials that ``adsearch
        worker`` hosts finish on their own are recorded by them, and may still land.)"""
        why = self.breaker.observe(failed, error)
        if why is None or self.fatal:
            return
        which = f"trial {trial_id}" if trial_id is not None else "the trial that tripped it"
        self.fatal = why + (f" (log of {which}: {log_path})" if log_path else "")
        self.tripped = True
        self.store.log_event(self.search_id, "daemon.breaker", self.fatal,
                             {"streak": self.breaker.streak, "failures": self.breaker.failures,
                              "trial_id": trial_id})
        log.error("%s", self.fatal)
        self.request_stop(cold=True, reason="failures")

    def _stop_failed(self, trial_id: int, status: str, message: str, log_path: str) -> None:
        """A child hit a code error (``status`` "error") or a data/config error ("config"),
        and :func:`settle` requeued its trial uncounted: stop the search as ``failed``, since
        every other child would fail the same way and the failure says nothing about the
        pattern."""
        if self.fatal:  # a second failing child: the first one's message stands
            return
        if status == "config" and "SpaceMismatchError" in message:
            self.fatal = (f"trial {trial_id} stopped the search: the search's space "
                          f"{self.cfg.space} does not fit the model: {message}; every pattern "
                          "of this space would fail alike, so start a new search with the "
                          "model's space (`adsearch sites` prints it) (log: "
                          f"{log_path})")
        elif status == "config":
            self.fatal = (f"trial {trial_id} stopped the search: {message}; fix the task config "
                          f"or data, then `adsearch resume` (log: {log_path})")
        else:
            self.fatal = (f"trial {trial_id} stopped the search: its code raised {message}; that "
                          "is a bug in the task or your code, not a result of the pattern: fix "
                          f"it, then `adsearch resume` (log: {log_path})")
        kind = "daemon.config_error" if status == "config" else "daemon.code_error"
        self.store.log_event(self.search_id, kind, self.fatal,
                             {"trial_id": trial_id, "log": log_path})
        log.error("%s", self.fatal)
        if not self.stop_level:  # a warm stop; a second failing child must not escalate it
            self.request_stop(reason="config-error" if status == "config" else "code-error")

    # ------------------------------------------------------------------ leases
    def _heartbeat(self, now: float) -> None:
        mine = [c.trial_id for c in self.children.values()]
        mine += [t.id for t, _ in self.prepared.values()]
        for tid in mine:
            if now - self._beats.get(tid, 0.0) >= self.cfg.heartbeat_seconds:
                self.queue.heartbeat(tid)
                self._beats[tid] = now
        if now - self._last_lease_scan < self.cfg.lease_seconds / 4:
            return
        self._last_lease_scan = now
        for lease in self.queue.expired(now):
            if lease.trial_id in mine:
                continue
            recover_lease(self.store, self.queue, self.cfg, self.search_id,
                          self.store.get_trial(lease.trial_id), f"lease of {lease.owner} expired")

    # ------------------------------------------------------------------ starting
    def _dispatch(self, now: float) -> None:
        """Start a child in every idle slot, then prepare every slot's next trial."""
        for slot in self.slots:
            if slot.index not in self.children:
                if slot.index not in self.prepared and not self._prepare(slot):
                    return  # the queue is empty
                self._start(slot)
        for slot in self.slots:
            if slot.index not in self.prepared and not self._prepare(slot):
                return

    def _prepare(self, slot: Slot) -> bool:
        """Lease the next queued trial for ``slot`` and write its spec. False: queue empty."""
        claimed = claim_queued(self.store, self.queue, self._owner, slot.name)
        if claimed is None:
            return False
        lease, trial = claimed
        attempt = trial.attempts + 1
        tdir = self.run.trial_dir(trial.id)
        tdir.mkdir(parents=True, exist_ok=True)
        (tdir / "result.json").unlink(missing_ok=True)
        write_json_atomic(tdir / "spec.json", child_spec(self, trial, attempt, slot), durable=False)
        self.prepared[slot.index] = (trial, attempt)
        self._beats[trial.id] = time.time()
        return True

    def _start(self, slot: Slot) -> None:
        """Spawn the prepared trial of ``slot``, then mark it running in the store."""
        from adsearch.store.records import utcnow

        trial, attempt = self.prepared.pop(slot.index)
        tdir = self.run.trial_dir(trial.id)
        child = self.executor.launch(slot, trial.id, tdir / "spec.json", tdir / "result.json",
                                     tdir / f"attempt-{attempt}.log", self.cfg.timeout_seconds(),
                                     attempt)
        self.children[slot.index] = child
        freed = self._freed_at.pop(slot.index, None)
        if freed is not None:
            self.latencies.append(max(0.0, child.started_at - freed))
        try:
            self.store.update_trial(trial.id, expect_state="queued", state="running",
                                    slot=slot.index, attempts=attempt, pid=child.pid,
                                    started_at=utcnow())
        except StoreError:
            del self.children[slot.index]
            child.kill("the trial changed state before it started")
            child.reap()
            self.queue.ack(trial.id)
            raise

    def _release_prepared(self) -> None:
        """Give every prepared (leased, not started) trial back to the queue."""
        for index, (trial, _) in list(self.prepared.items()):
            self.queue.release(trial.id, front=True)
            self._beats.pop(trial.id, None)
            del self.prepared[index]

    # ------------------------------------------------------------------ cold stop
    def _cold_stop(self) -> None:
        """Kill every child and requeue its trial without counting the interrupted run."""
        self._release_prepared()
        requeued = []
        for index, child in list(self.children.items()):
            del self.children[index]
            if self.tripped:  # the breaker tripped: nothing is recorded after its trial
                child.kill("failure breaker")
                child.reap()
                requeue_uncounted(self.store, self.queue, child.trial_id, "interrupted (the "
                                  "failure breaker stopped the search); requeued")
                requeued.append(child.trial_id)
            elif interrupt(self.store, self.queue, self.run, self.cfg, child, "cold stop"):
                self.active.discard(child.trial_id)
                if child.trial_id not in self.recheck_ids:
                    self.unconsumed.append(child.trial_id)
            else:
                requeued.append(child.trial_id)
        self.store.log_event(self.search_id, "daemon.cold_stop",
                             f"cold stop: children killed, trials {requeued} requeued",
                             {"requeued": requeued})
