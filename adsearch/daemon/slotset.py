"""The slots of one process and their children: :class:`SlotSet` claims, prepares, starts,
watches and reaps them, for the daemon's own slots and for ``adsearch worker`` alike.

A :class:`SlotSet` owns the slots' state: the running children, the prepared trials, the lease
heartbeats, each slot's busy time and start latency. Its owner (the host) keeps what a
child's end means: the daemon (:class:`SlotsMixin`, mixed into
:class:`~adsearch.daemon.loop.Daemon`) feeds its controller and failure breaker, and finds
expired leases; a worker (:class:`~adsearch.daemon.hostworker.HostWorker`) checks that it still
holds a trial's lease. Both settle a run by the one rule of :mod:`adsearch.daemon.settle`.

Each slot holds at most one running child and one *prepared* trial: while a child runs, the
daemon's slot already claims (leases) the next trial and writes its spec, so when the child
exits the next one starts at once, before the finished trial's result is even stored. A
prepared trial stays ``queued`` in the store; its lease is renewed like a running one's, and
it is given back to the queue (first in line) on any stop. A worker starts what it claims at
once (nothing waits prepared there).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from adsearch.daemon.recovery import Outcome, claim_queued, read_outcome, recover_lease
from adsearch.daemon.rundir import RunDir, write_json_atomic
from adsearch.daemon.settle import interrupt, requeue_uncounted, settle
from adsearch.daemon.slots import RunningChild, Slot, ended_children
from adsearch.daemon.stopping import Stoppable
from adsearch.errors import StoreError
from adsearch.queue.base import LeaseLost

if TYPE_CHECKING:
    from adsearch.daemon.config import SearchConfig
    from adsearch.daemon.executors import Executor
    from adsearch.daemon.failures import FailureBreaker
    from adsearch.daemon.pruning import Scheduler
    from adsearch.queue.base import Queue
    from adsearch.store.contract import StoreContract
    from adsearch.store.records import ResultRecord, TrialRecord


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


class SlotHost(SpecOwner, Protocol):
    """What a :class:`SlotSet` reads from its host at each call (``initialize`` sets them)."""

    @property
    def store(self) -> StoreContract: ...

    @property
    def queue(self) -> Queue: ...

    @property
    def run(self) -> RunDir: ...

    @property
    def executor(self) -> Executor: ...


class SlotSet:
    """The slots of one process: their running children, prepared trials and lease
    heartbeats, and the lifecycle of a trial in a slot: claim, prepare (spec written), start
    (marked ``running``), heartbeat, reap.

    Args:
        host: the daemon or the worker: its ``store``, ``queue``, ``run``, ``cfg``,
            ``scheduler`` and ``executor`` are read when needed.
        owner: the lease owner name (``daemon-PID``, ``worker-HOST-PID``).
        owner_checked: heartbeats name the owner, and a lease that was taken away
            (:class:`~adsearch.queue.base.LeaseLost`) kills its child instead of raising:
            an ``adsearch worker``, whose expired lease the daemon may give to another host.

    Times are seconds since the epoch (``time.time()``); durations seconds.
    """

    def __init__(self, host: SlotHost, owner: str, *, owner_checked: bool) -> None:
        self.host = host
        self.owner = owner
        self.owner_checked = owner_checked
        self.children: dict[int, RunningChild] = {}  # slot index -> running child
        self.prepared: dict[int, tuple[TrialRecord, int]] = {}  # slot index -> (trial, attempt)
        self.beats: dict[int, float] = {}  # trial id -> its lease's last heartbeat
        self.claimed_at: dict[int, float] = {}  # trial id -> when this process leased it
        self.busy: dict[int, float] = {}  # slot index -> seconds with a child running
        self.freed_at: dict[int, float] = {}  # slot index -> when its last child ended
        self.latencies: list[float] = []  # seconds from a child's end to its slot's next start

    def trial_ids(self) -> set[int]:
        """The trials this process holds: running or prepared."""
        return ({c.trial_id for c in self.children.values()}
                | {t.id for t, _ in self.prepared.values()})

    # ------------------------------------------------------------------ claiming
    def claim(self, slot: Slot) -> tuple[TrialRecord, int] | None:
        """Lease the next queued trial for ``slot``: ``(trial, attempt)``, or None when the
        queue is empty (:func:`~adsearch.daemon.recovery.claim_queued`)."""
        claimed = claim_queued(self.host.store, self.host.queue, self.owner, slot.name)
        if claimed is None:
            return None
        lease, trial = claimed
        self.claimed_at[trial.id] = lease.claimed_at
        return trial, trial.attempts + 1

    def stage(self, slot: Slot, trial: TrialRecord, attempt: int) -> None:
        """Write the spec of a claimed trial's run and hold it as ``slot``'s next trial."""
        tdir = self.host.run.trial_dir(trial.id)
        tdir.mkdir(parents=True, exist_ok=True)
        (tdir / "result.json").unlink(missing_ok=True)
        write_json_atomic(tdir / "spec.json", child_spec(self.host, trial, attempt, slot),
                          durable=False)
        self.prepared[slot.index] = (trial, attempt)
        self.beats[trial.id] = time.time()

    def prepare(self, slot: Slot) -> bool:
        """Claim and stage ``slot``'s next trial. False: the queue is empty."""
        got = self.claim(slot)
        if got is None:
            return False
        self.stage(slot, *got)
        return True

    # ------------------------------------------------------------------ starting
    def mark_running(self, trial: TrialRecord, attempt: int, slot: Slot, pid: int) -> None:
        """Move a claimed trial from ``queued`` to ``running`` in the store (compare-and-set).

        Raises:
            StoreError: the trial is no longer queued (someone else moved it, e.g. the
                daemon staled it at the budget); its queue entry is acked first.
        """
        from adsearch.store.records import utcnow

        try:
            self.host.store.update_trial(trial.id, expect_state="queued", state="running",
                                         slot=slot.index, attempts=attempt, pid=pid,
                                         started_at=utcnow())
        except StoreError:
            self.host.queue.ack(trial.id)
            raise

    def start(self, slot: Slot) -> RunningChild:
        """Spawn ``slot``'s prepared trial with the host's executor, then mark it running.

        Raises:
            StoreError: the trial changed state before it started: its child is killed and
                its queue entry acked (:meth:`mark_running`).
        """
        trial, attempt = self.prepared.pop(slot.index)
        tdir = self.host.run.trial_dir(trial.id)
        child = self.host.executor.launch(
            slot, trial.id, tdir / "spec.json", tdir / "result.json",
            tdir / f"attempt-{attempt}.log", self.host.cfg.timeout_seconds(), attempt)
        self.children[slot.index] = child
        freed = self.freed_at.pop(slot.index, None)
        if freed is not None:
            self.latencies.append(max(0.0, child.started_at - freed))
        try:
            self.mark_running(trial, attempt, slot, child.pid)
        except StoreError:
            del self.children[slot.index]
            child.kill("the trial changed state before it started")
            child.reap()
            raise
        return child

    # ------------------------------------------------------------------ watching
    def heartbeat(self, now: float) -> None:
        """Renew the lease of every running and prepared trial whose last heartbeat is
        ``cfg.heartbeat_seconds`` old. With ``owner_checked``, a lease taken away kills its
        child (logged); otherwise :class:`~adsearch.queue.base.LeaseLost` propagates."""
        every = self.host.cfg.heartbeat_seconds
        owner = self.owner if self.owner_checked else None
        for index, child in list(self.children.items()):
            tid = child.trial_id
            if now - self.beats.get(tid, 0.0) < every:
                continue
            try:
                self.host.queue.heartbeat(tid, owner=owner)
            except LeaseLost:
                if not self.owner_checked:
                    raise
                logging.getLogger("adsearch.worker").warning(
                    "trial %d: lease revoked; killing its child", tid)
                child.kill("lease revoked")
                child.reap()
                del self.children[index]
                self.beats.pop(tid, None)
                continue
            self.beats[tid] = now
        for trial, _ in self.prepared.values():
            if now - self.beats.get(trial.id, 0.0) >= every:
                self.host.queue.heartbeat(trial.id, owner=owner)
                self.beats[trial.id] = now

    def reap(self, now: float) -> Iterator[tuple[int, RunningChild, int, Outcome | None]]:
        """Yield ``(slot index, child, exit status, outcome)`` of each child that ended
        (those past their timeout are killed first), already out of its slot, with the RESULT
        its run wrote (None: none); the slot's busy time and free time are kept."""
        for index, child, code in ended_children(self.children, now):
            end = time.time()
            self.busy[index] = self.busy.get(index, 0.0) + (end - child.started_at)
            outcome = read_outcome(self.host.run, child.trial_id, child.attempt)
            self.freed_at[index] = outcome.ended_at if outcome and outcome.ended_at else end
            yield index, child, code, outcome

    def ended(self, trial_id: int) -> float:
        """Forget the lease bookkeeping of a trial whose run ended; returns when this process
        leased it (0.0: unknown)."""
        self.beats.pop(trial_id, None)
        return self.claimed_at.pop(trial_id, 0.0)

    # ------------------------------------------------------------------ stopping
    def release_prepared(self) -> None:
        """Give every prepared (leased, not started) trial back to the queue, first in line."""
        for index, (trial, _) in list(self.prepared.items()):
            self.host.queue.release(trial.id, front=True)
            self.ended(trial.id)
            del self.prepared[index]

    def drain(self) -> Iterator[RunningChild]:
        """Take each running child out of its slot (a stop); the caller kills and settles it."""
        for index, child in list(self.children.items()):
            del self.children[index]
            yield child

    def abandon(self, why: str) -> None:
        """Kill every child and forget every trial, settling nothing (their trials belong to
        someone else now: another daemon took the search over)."""
        for child in self.children.values():
            child.kill(why)
            child.reap()
        self.children.clear()
        self.prepared.clear()


class SlotsMixin(Stoppable):
    """What the daemon (:class:`~adsearch.daemon.loop.Daemon`) does with its slots, whose
    state its :class:`SlotSet` owns: dispatch, settle ended runs into the search (controller,
    failure breaker), find expired leases, stop; and collect what ``adsearch worker`` hosts
    finished."""

    # state and collaborators provided by Daemon
    slotset: SlotSet  # the slots' children, prepared trials and heartbeats
    slots: list[Slot]
    active: set[int]
    unconsumed: list[int]
    consumed: set[int]
    recheck_ids: set[int]  # re-check trials: their results never reach the controller
    _last_lease_scan: float
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

    @property
    def children(self) -> dict[int, RunningChild]:
        """Running children by slot index (the :class:`SlotSet`'s)."""
        return self.slotset.children

    @children.setter
    def children(self, value: dict[int, RunningChild]) -> None:
        self.slotset.children = value

    # ------------------------------------------------------------------ reaping
    def _reap(self, now: float) -> None:
        for index, child, code, outcome in self.slotset.reap(now):
            if not self.stop_level and index in self.slotset.prepared:
                self._start(self.slots[index])  # the slot's next child first, bookkeeping after
            self._settle(child, code, outcome)

    def _settle(self, child: RunningChild, code: int, outcome: Outcome | None) -> None:
        """Store a finished child's result, or requeue / fail its trial (:func:`settle`);
        stop the search on a code error (not a result) or when the failure breaker trips."""
        self.slotset.ended(child.trial_id)
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
        """Renew this daemon's leases; every ``lease_seconds / 4``, settle the expired leases
        of others (:func:`~adsearch.daemon.recovery.recover_lease`)."""
        mine = self.slotset.trial_ids()
        self.slotset.heartbeat(now)
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
                if slot.index not in self.slotset.prepared and not self._prepare(slot):
                    return  # the queue is empty
                self._start(slot)
        for slot in self.slots:
            if slot.index not in self.slotset.prepared and not self._prepare(slot):
                return

    def _prepare(self, slot: Slot) -> bool:
        """Lease the next queued trial for ``slot`` and write its spec. False: queue empty."""
        return self.slotset.prepare(slot)

    def _start(self, slot: Slot) -> None:
        """Spawn the prepared trial of ``slot``, then mark it running in the store (a trial
        that changed state meanwhile raises StoreError: the daemon alone moves its trials)."""
        self.slotset.start(slot)

    def _release_prepared(self) -> None:
        """Give every prepared (leased, not started) trial back to the queue."""
        self.slotset.release_prepared()

    # ------------------------------------------------------------------ other hosts
    def _collect_finished(self) -> list[tuple[TrialRecord, ResultRecord | None]]:
        """Trials that finished outside this daemon's slots (``adsearch worker`` processes):
        done ones join the controller's ``unconsumed`` list in finish order (re-check trials
        excepted: they are no sample of the policy), failed or stale ones leave ``active``.
        Returns ``(trial, result or None)`` of each ended trial, done ones in finish order
        first (the failure breaker counts them)."""
        candidates = self.active - self.slotset.trial_ids()
        if not candidates:
            return []
        store, sid = self.store, self.search_id
        still = {t.id for t in store.trials(sid, states=["queued", "running"])}
        gone = sorted(candidates - still)
        if not gone:
            return []
        results = sorted(store.results(sid, gone), key=lambda r: (r.created_at, r.trial_id))
        trials = {tid: store.get_trial(tid) for tid in gone}
        done = [r for r in results if trials[r.trial_id].state == "done"]
        self.active.difference_update(gone)
        self.unconsumed.extend(r.trial_id for r in done if r.trial_id not in self.consumed
                               and r.trial_id not in self.recheck_ids)
        ended: list[tuple[TrialRecord, ResultRecord | None]] = [(trials[r.trial_id], r)
                                                                 for r in done]
        ended += [(trials[t], None) for t in gone if trials[t].state == "failed"]
        return ended

    # ------------------------------------------------------------------ cold stop
    def _cold_stop(self) -> None:
        """Kill every child and requeue its trial without counting the interrupted run."""
        self._release_prepared()
        requeued = []
        for child in self.slotset.drain():
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
