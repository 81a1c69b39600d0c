"""What happens to a trial when its child run ends: one rule for the daemon's own slots
(:class:`~adsearch.daemon.slotset.SlotsMixin`) and for ``adsearch worker`` hosts
(:class:`~adsearch.daemon.hostworker.HostWorker`).

- a result (``ok`` or a bad pattern) is stored and the queue entry acked;
- a code error or a data/config error (:mod:`adsearch.daemon.failures`) is not a result and
  says nothing about the pattern: the trial goes back to the queue, first in line, without
  counting the run, and the caller stops (the daemon fails the search; a worker stops, and
  fails the search on a code error);
- a run that ended without a result (killed, timed out, crashed) is an infrastructure
  failure: :func:`~adsearch.daemon.recovery.retry_or_fail` requeues or fails the trial;
- a run killed on purpose (a cold stop, a worker that stops) keeps a result it wrote in
  time, and is otherwise requeued without counting it (:func:`interrupt`).

The callers keep what is theirs: the daemon feeds the controller and its failure breaker,
a worker checks that it still holds the lease (another host may own the trial by now).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adsearch.daemon.config import SearchConfig
from adsearch.daemon.recovery import Outcome, read_outcome, record_outcome, retry_or_fail
from adsearch.daemon.rundir import RunDir

if TYPE_CHECKING:
    from adsearch.daemon.slots import RunningChild
    from adsearch.queue.base import Queue
    from adsearch.store.contract import StoreContract

log = logging.getLogger("adsearch.daemon")


@dataclass(frozen=True)
class Settled:
    """What :func:`settle` did with one ended run.

    ``kind`` is ``"result"`` (stored, the trial is ``done``), ``"config"`` or ``"error"``
    (requeued uncounted; the caller must stop), ``"queued"`` (requeued for another attempt)
    or ``"failed"`` (out of attempts). ``reason`` says why for every kind but a result.
    """

    kind: str
    reason: str | None = None


def lost_reason(outcome: Outcome | None, code: int, kill_reason: str | None) -> str:
    """Why a run ended without a result: the child's own error, why it was killed, its
    signal, or its exit status (in that order of preference)."""
    if outcome is not None:
        return f"child error: {outcome.error}"
    if kill_reason:
        return kill_reason
    if code < 0:
        return f"child killed by signal {-code}"
    return f"child exited with status {code} without a result"


def requeue_uncounted(store: StoreContract, queue: Queue, trial_id: int, error: str) -> bool:
    """Give a ``running`` trial back to the queue, first in line, without counting the run
    (``attempts - 1``). Returns False, doing nothing, when the trial is no longer running
    (someone else settled it meanwhile)."""
    trial = store.get_trial(trial_id)
    if trial.state != "running":
        return False
    store.update_trial(trial_id, expect_state="running", state="queued", pid=None, slot=None,
                       attempts=max(0, trial.attempts - 1), error=error)
    queue.release(trial_id, front=True)
    return True


def settle(store: StoreContract, queue: Queue, cfg: SearchConfig, search_id: int, trial_id: int,
           outcome: Outcome | None, code: int, kill_reason: str | None, log_path: str, *,
           where: str = "") -> Settled:
    """Settle one ended run of ``trial_id`` by the rules above.

    Args:
        outcome: the run's RESULT file (:func:`~adsearch.daemon.recovery.read_outcome`),
            None when it wrote none.
        code: the child's exit status (negative: killed by that signal).
        kill_reason: why the daemon or worker killed it (timeout, ...), or None.
        log_path: the run's log file, named in the reason.
        where: who ran it, for the messages (``" on worker-HOST-PID"``; empty: the daemon).
    """
    if outcome is not None and record_outcome(store, queue, cfg, trial_id, outcome):
        return Settled("result")
    if outcome is not None and outcome.status in ("config", "error"):
        message = outcome.error or "unknown error"
        requeue_uncounted(store, queue, trial_id, f"not run{where}: {message}")
        return Settled(outcome.status, message)
    reason = f"{lost_reason(outcome, code, kill_reason)}{where} (log: {log_path})"
    log.warning("trial %d: %s", trial_id, reason)
    state = retry_or_fail(store, queue, cfg, search_id, store.get_trial(trial_id), reason)
    return Settled(state, reason)


def interrupt(store: StoreContract, queue: Queue, run: RunDir, cfg: SearchConfig,
              child: RunningChild, why: str) -> bool:
    """Kill ``child`` on purpose (``why``: "cold stop", "worker-HOST-PID stopped") and
    settle its trial: a result it wrote in time is stored (True); otherwise the trial is
    requeued without counting the interrupted run (False)."""
    child.kill(why)
    child.reap()
    outcome = read_outcome(run, child.trial_id, child.attempt)
    if outcome is not None and record_outcome(store, queue, cfg, child.trial_id, outcome):
        return True
    requeue_uncounted(store, queue, child.trial_id, f"interrupted ({why}); requeued")
    return False
