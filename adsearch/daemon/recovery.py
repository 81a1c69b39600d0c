"""Crash recovery: make the queue agree with the store, and decide what a lost run means.

The store is the source of truth for trial states; the queue holds order and leases. After
any crash (daemon ``kill -9``, power loss, a worker that hangs) :func:`reconcile` restores
these invariants, and the daemon keeps them from then on:

- every ``queued`` trial is pending in the queue exactly once;
- every ``running`` trial belongs to a live child of the running daemon, or of a live
  ``adsearch worker`` (database queue only), holding a lease;
- no terminal trial (``done``, ``failed``, ``stale``) is pending or leased.

A run that ended without a result (child killed, daemon died, lease expired, timeout) is an
*infrastructure failure*: :func:`retry_or_fail` requeues its trial (first in line) while
``attempts < max_attempts``, else marks it ``failed``. ``attempts`` counts the child runs
started, minus runs interrupted on purpose by a cold stop, and minus runs lost because *the
daemon* died (:func:`requeue_daemon_lost`): the child dies with its daemon, and a crash of
the daemon is not the trial's fault, so repeated daemon crashes never fail a healthy trial
(a run lost by an ``adsearch worker`` host still counts). A result the child wrote before
the daemon died is not thrown away: :func:`salvage` records it, so no finished work is lost.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adsearch.daemon.config import SearchConfig
from adsearch.daemon.failures import BAD_PATTERN, FAILURE_CLASSES
from adsearch.daemon.rundir import RunDir, read_json
from adsearch.reward import failure

if TYPE_CHECKING:
    from adsearch.queue.base import Lease, Queue
    from adsearch.store.contract import StoreContract
    from adsearch.store.records import TrialRecord

log = logging.getLogger("adsearch.daemon")


@dataclass(frozen=True)
class Outcome:
    """What a finished child run produced, read from its RESULT file."""

    status: str  # "ok", "bad_pattern", "error", "infra" or "config" (adsearch.daemon.failures)
    reward: float | None
    metrics: dict[str, Any]
    curve: list[dict[str, Any]]
    seconds: float
    error: str | None
    ended_at: float | None


def claim_queued(store: StoreContract, queue: Queue, owner: str,
                 slot: str) -> tuple[Lease, TrialRecord] | None:
    """Lease the next entry whose trial is still ``queued`` in the store.

    The store is the source of truth: an entry whose trial already moved on (finished,
    failed or claimed elsewhere) is acknowledged and skipped. Returns ``(lease, trial)``, or
    None when the queue is empty.
    """
    while True:
        lease = queue.claim(owner, slot)
        if lease is None:
            return None
        trial = store.get_trial(lease.trial_id)
        if trial.state == "queued":
            return lease, trial
        queue.ack(trial.id)


def read_outcome(run: RunDir, trial_id: int, attempt: int) -> Outcome | None:
    """The outcome written by attempt ``attempt`` of the trial, or None (no complete file)."""
    doc = read_json(run.trial_dir(trial_id) / "result.json")
    if not isinstance(doc, dict) or doc.get("attempt") != attempt or doc.get("trial_id") != trial_id:
        return None
    if doc.get("status") not in ("ok", *FAILURE_CLASSES):
        return None
    return outcome_from_doc(doc)


def outcome_from_doc(doc: dict[str, Any]) -> Outcome:
    """The :class:`Outcome` of a child's RESULT document (:func:`adsearch.daemon.child.run`
    returns one; a child process writes it to ``result.json``)."""
    return Outcome(
        status=str(doc["status"]),
        reward=doc.get("reward"),
        metrics=dict(doc.get("metrics") or {}),
        curve=list(doc.get("curve") or []),
        seconds=float(doc.get("seconds") or 0.0),
        error=doc.get("error"),
        ended_at=doc.get("ended_at"),
    )


def record_outcome(store: StoreContract, queue: Queue, cfg: SearchConfig, trial_id: int,
                   outcome: Outcome) -> bool:
    """Store a result (``ok`` or ``bad_pattern``). Returns False for the other outcomes,
    which are not results: ``infra`` is retried, ``error``/``config`` stop the search.

    A bad pattern (the child raised, diverged, or returned a non-finite reward) is a result:
    the trial is ``done`` with reward ``cfg.failure_reward``, ``metrics["bad_pattern"] = 1``
    and the error in ``trial.error``; the controller receives that reward like any other.
    """
    if outcome.status not in ("ok", BAD_PATTERN):
        return False
    error = None  # a clean result clears what an earlier, killed attempt left in trial.error
    if outcome.status == "ok" and outcome.reward is not None:
        reward, metrics = float(outcome.reward), outcome.metrics
    else:
        reward = failure(cfg.failure_reward)  # the one rule: adsearch.reward
        metrics = {**outcome.metrics, "bad_pattern": 1.0}
        error = (outcome.error or "bad pattern")[:2000]
    store.finish_trial(trial_id, reward, metrics, outcome.curve, outcome.seconds, state="done",
                       error=error)
    queue.ack(trial_id)
    return True


def retry_or_fail(store: StoreContract, queue: Queue, cfg: SearchConfig, search_id: int,
                  trial: TrialRecord, reason: str) -> str:
    """Handle a run lost to an infrastructure failure. Returns the trial's new state."""
    from adsearch.store.records import utcnow

    if trial.attempts >= cfg.max_attempts:
        store.update_trial(trial.id, state="failed", pid=None,
                           error=f"{reason} (attempt {trial.attempts} of {cfg.max_attempts}: giving up)",
                           finished_at=utcnow())
        queue.ack(trial.id)
        store.log_event(search_id, "trial_failed", f"trial {trial.id} failed: {reason}",
                        {"trial_id": trial.id, "attempts": trial.attempts})
        return "failed"
    store.update_trial(trial.id, state="queued", pid=None, slot=None,
                       error=f"{reason} (attempt {trial.attempts}; requeued)")
    queue.release(trial.id, front=True)
    store.log_event(search_id, "trial_requeued", f"trial {trial.id} requeued: {reason}",
                    {"trial_id": trial.id, "attempts": trial.attempts})
    return "queued"


def requeue_daemon_lost(store: StoreContract, queue: Queue, search_id: int,
                        trial: TrialRecord) -> str:
    """Requeue a ``running`` trial whose run was lost because its daemon died (the child
    dies with it), first in line and *without counting the lost run* (``attempts - 1``):
    the crash is the daemon's, not the trial's. Returns ``"queued"``."""
    store.update_trial(trial.id, expect_state="running", state="queued", pid=None, slot=None,
                       attempts=max(0, trial.attempts - 1),
                       error=("lost when the daemon stopped without finishing it (not counted: "
                              "a crash of the daemon is not the trial's); requeued"))
    queue.release(trial.id, front=True)
    store.log_event(search_id, "trial_requeued",
                    f"trial {trial.id} requeued: lost when the daemon stopped (not counted)",
                    {"trial_id": trial.id, "attempts": max(0, trial.attempts - 1),
                     "counted": False})
    return "queued"


def salvage(store: StoreContract, queue: Queue, run: RunDir, cfg: SearchConfig,
            trial: TrialRecord) -> bool:
    """Record the result of a run whose child finished but whose daemon died before it
    stored the result. Returns True when the trial is now ``done``."""
    outcome = read_outcome(run, trial.id, trial.attempts)
    if outcome is None:
        return False
    return record_outcome(store, queue, cfg, trial.id, outcome)


def recover_lease(store: StoreContract, queue: Queue, cfg: SearchConfig, search_id: int,
                  trial: TrialRecord, reason: str) -> str:
    """Settle the lease of ``trial`` that nobody renews any more (its daemon or worker is
    gone), by the trial's state in the store. One rule for the daemon's start
    (:func:`reconcile`) and for the expired leases it finds while it runs.

    Returns:
        ``"queued"`` or ``"failed"``: the trial was running, and :func:`retry_or_fail`
        requeued it (``attempts`` already counts the lost run) or gave up; ``"released"``:
        it was leased but never started, and goes back to the queue first in line;
        ``"dropped"``: it is finished, and the leftover lease is acknowledged.
    """
    if trial.state == "running":
        return retry_or_fail(store, queue, cfg, search_id, trial, reason)
    if trial.state == "queued":
        queue.release(trial.id, front=True)
        return "released"
    queue.ack(trial.id)
    return "dropped"


def daemon_lease(lease: Lease | None) -> bool:
    """A lease a daemon took for its own slots (``daemon-PID``), as opposed to one held by an
    ``adsearch worker`` on some host."""
    return lease is not None and lease.owner.startswith("daemon-")


def reconcile(store: StoreContract, queue: Queue, run: RunDir, cfg: SearchConfig,
              search_id: int, *,
              shared: bool = False) -> dict[str, int]:
    """Restore the invariants above at daemon start. Returns counts of what was done, for
    the event log: ``salvaged``, ``requeued``, ``failed``, ``pushed``, ``dropped`` and
    ``remote`` (trials left to live workers).

    The caller holds the daemon lock, so no other daemon is alive and every daemon lease and
    every ``running`` trial of a daemon is left over from a dead one. One rule for both
    queues; the only difference is who else may be alive:

    Args:
        shared: the queue is the database queue (:class:`~adsearch.queue.dbqueue.DbQueue`),
            which ``adsearch worker`` processes on other hosts claim from. A trial leased by
            a worker whose lease is live is theirs: left alone, running. With the file queue
            (``shared=False``) nothing but the daemon ever holds a lease, so every lease is
            a dead daemon's.
    """
    now = time.time()
    queue.repair()
    stats = {"salvaged": 0, "requeued": 0, "failed": 0, "pushed": 0, "dropped": 0, "remote": 0}
    leases = {le.trial_id: le for le in queue.leases()}

    def live_remote(tid: int) -> bool:
        le = leases.get(tid)
        return (shared and le is not None and not daemon_lease(le)
                and not le.expired(now, queue.lease_seconds))

    running = store.trials(search_id, states=["running"])
    for trial in running:
        if live_remote(trial.id):
            stats["remote"] += 1
            continue
        if salvage(store, queue, run, cfg, trial):
            stats["salvaged"] += 1
            continue
        le = leases.get(trial.id)
        if le is None or daemon_lease(le):  # a dead daemon's child: not the trial's fault
            stats["requeued"] += requeue_daemon_lost(store, queue, search_id, trial) == "queued"
            continue
        done = recover_lease(store, queue, cfg, search_id, trial,
                             f"lost when {le.owner} stopped without finishing it")
        stats["requeued" if done == "queued" else "failed"] += 1
    running_ids = {t.id for t in running}
    for tid in sorted(leases):  # leased but never marked running (prepared), or terminal
        if tid in running_ids or live_remote(tid):
            continue
        done = recover_lease(store, queue, cfg, search_id, store.get_trial(tid),
                             f"lease of {leases[tid].owner} left behind")
        stats["dropped"] += done == "dropped"
    queued = [t.id for t in store.trials(search_id, states=["queued"])]
    waiting = set(queue.pending()) | {le.trial_id for le in queue.leases()}
    missing = [tid for tid in queued if tid not in waiting]
    queue.push(missing, front=True)  # they waited already: ahead of later draws
    stats["pushed"] = len(missing)
    # still running now: only trials of live workers (every other one was settled above)
    active = set(queued) | {t.id for t in store.trials(search_id, states=["running"])}
    extra = [tid for tid in queue.pending() if tid not in active]
    if extra:  # pending but terminal (or unknown) in the store
        queue.discard(extra)
        stats["dropped"] += len(extra)
    log.info("recovery (%s queue): %s", "database" if shared else "file", stats)
    return stats
