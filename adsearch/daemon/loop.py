"""The search daemon: ``initialize()``, ``loop(now)``, ``shutdown()`` (as huey/rq workers).

One pass of :meth:`Daemon.loop`:

1. reap children that exited: store their result (or requeue their trial), ack the queue;
2. kill children past their timeout; renew the leases of the others (heartbeat);
3. feed full batches of finished results to the controller, checkpoint it atomically, then
   record the checkpoint with the trial ids it consumed in the store;
4. draw new trials so that ``lookahead`` trials wait in the queue (bounded by the trial
   budget and by ``max_ahead`` drawn-but-unconsumed trials);
5. give each idle slot a trial from the queue (claim, lease, spawn the child);
6. write ``daemon-state.json`` (slots, running trials, and why anything waits).

Signal handlers only set flags (:meth:`Daemon.request_stop`): the first SIGTERM/SIGINT asks
for a warm stop (no new trials, running ones finish), a second one or SIGUSR1 for a cold
stop (children killed, their trials requeued). Exactly-once feeding: a result is in the
controller's weights iff its trial id is in the latest checkpoint's ``consumed_ids``; at
start, every ``done`` trial not in that set is fed again (once), in finish order.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from adsearch.daemon.config import SearchConfig
from adsearch.daemon.executors import make_executor, open_queue, uses_db_queue
from adsearch.daemon.failures import FailureBreaker
from adsearch.daemon.pruning import Scheduler
from adsearch.daemon.recheck import RECHECK, SEARCH_PURPOSES
from adsearch.daemon.rundir import DaemonLock, RunDir, write_json_atomic
from adsearch.daemon.slots import plan_slots
from adsearch.daemon.slotset import SlotSet, SlotsMixin
from adsearch.daemon.stopping import COLD
from adsearch.errors import AdsearchError, CheckpointError, DaemonError
from adsearch.patterns import SearchSpace
from adsearch.patterns.canonical import pattern_hash
from adsearch.reward import learned_rewards

if TYPE_CHECKING:
    from adsearch.controller import Controller
    from adsearch.store.leases import DaemonLease

log = logging.getLogger("adsearch.daemon")


class Daemon(SlotsMixin):
    """Runs one search from its run directory until its budget is spent or it is stopped.

    Args:
        run_dir: the search's run directory (holds ``search.json``).
        max_loops: stop (warm) after this many passes; for tests ("burst mode").
        budget_minutes, budget_trials: a new total budget (``resume --budget-*``), checked
            and written by :meth:`initialize` after every other start-up check.
        fresh_controller: ignore the controller checkpoints and start a new controller that
            is fed every stored result again (``resume --fresh-controller``: the way out
            when no checkpoint is readable).
    """

    #: The search's lease in the store while this daemon holds it (adsearch/daemon/lease.py);
    #: ``lease_lost``: another daemon took it over (see :meth:`_renew_lease`).
    lease: DaemonLease | None = None
    lease_lost = False
    _lease_beat = 0.0

    def __init__(self, run_dir: str | os.PathLike[str], *, max_loops: int | None = None,
                 budget_minutes: float | None = None, budget_trials: int | None = None,
                 fresh_controller: bool = False) -> None:
        self.run = RunDir(run_dir)
        self.max_loops = max_loops
        self.new_budget = (budget_minutes, budget_trials)  # resume --budget-*: written at start
        self.fresh_controller = fresh_controller  # resume --fresh-controller
        self.controller_notes: list[str] = []  # how the controller was restored, for status
        self.stop_level = 0
        self.stop_reason = ""
        self.finished = False
        self._owner = f"daemon-{os.getpid()}"
        # the slots' children, prepared trials, heartbeats, busy time and start latency
        self.slotset = SlotSet(self, self._owner, owner_checked=False)
        self.unconsumed: list[int] = []  # done trial ids not yet in the controller, finish order
        self.consumed: set[int] = set()
        self.active: set[int] = set()  # queued or running trial ids
        self.recheck_ids: set[int] = set()  # re-check trials (adsearch.daemon.recheck): they
        # never reach the controller and cost no trial budget
        self.wall_spent = False  # --budget-minutes reached (the re-check runs after it)
        self.waiting: list[str] = []
        self._loops = 0
        self._last_state = 0.0
        self._last_elapsed = 0.0
        self._last_lease_scan = 0.0
        self._started = time.time()
        self.controller_stats: dict[str, Any] = {}
        self.fatal: str | None = None  # why the search cannot go on (state "failed")
        self._stopping_written = False  # "stopping" is in the store (set once a stop is asked)

    # ------------------------------------------------------------------ initialize
    def initialize(self) -> None:
        """Open the store, take the daemon lock, restore the controller and recover."""
        from adsearch.controller import CheckpointManager, make_controller
        from adsearch.store import Store
        from adsearch.tasks import get_task, load_config

        ident = self.run.identity()
        if ident is None:
            raise DaemonError(f"{self.run.path} holds no search.json: not a run directory")
        self.name = str(ident["name"])
        self.lock = DaemonLock(self.run, self.name)
        self.lock.acquire()
        try:
            store = self.store = Store(self.run.store_url())
            search = self.store.get_search(self.name)
            self.search_id = search.id
            self.cfg = SearchConfig.from_dict(search.config).validate()
            self._take_lease()  # before recovery: another daemon's running trials are its own
            self.task = get_task(self.cfg.task)
            self.task_config = load_config(self.task, self.cfg.task, self.cfg.task_config)
            self.space = SearchSpace.from_name(self.cfg.space) if self.cfg.space else self.task.space(self.task_config)
            self.slots, self.slot_source = plan_slots(
                gpus=self.cfg.gpus, slots_per_gpu=self.cfg.slots_per_gpu, workers=self.cfg.workers)
            self._check_gpus()
            self.ckpts = CheckpointManager(self.run.checkpoint_dir, keep=3)
            import torch  # noqa: F401 - checkpoints need it; load it now, not mid-search
            self.controller = self._restore_controller(make_controller)
            url = self.run.store_url()
            self.queue, stats = open_queue(store, self.run, self.cfg, self.search_id, url)
            self.shared_queue = uses_db_queue(url)  # `adsearch worker` processes may serve it
            self._collected_at = 0.0
            self.executor = make_executor(self.cfg)
            self.scheduler = Scheduler(self.cfg, url)
            self.breaker = FailureBreaker.from_config(self.cfg)
            if self.executor.name != "local":
                self.slot_source += f", {self.executor.describe()}"
            self.active = {t.id for t in self.store.trials(self.search_id, states=["queued", "running"])}
            self.recheck_ids = {t.id for t in self.store.trials(self.search_id,
                                                                purposes=[RECHECK])}
            self.unconsumed = [tid for tid, _ in self.store.reward_series(self.search_id)
                               if tid not in self.consumed and tid not in self.recheck_ids]
            self.n_trials = sum(self.store.counts(self.search_id,
                                                  purposes=SEARCH_PURPOSES).values())
            sync = getattr(self.controller, "sync_drawn", None)  # TPE: its draw index (issue 20)
            if callable(sync):
                sync(sum(self.store.counts(self.search_id, purposes=["search"]).values()))
            self._elapsed_base = self.run.elapsed()
            if self.new_budget != (None, None):  # every check passed: now write the budget
                from adsearch.daemon.launch import apply_budget, plan_budget

                minutes, trials = self.new_budget
                change = plan_budget(self.run, self.store, search, minutes=minutes, trials=trials)
                apply_budget(self.store, search, change)
                self.cfg = change.config
            if self.fresh_controller:
                self._forget_old_controller()
            self.store.set_search_state(self.search_id, "running")
            self.store.log_event(
                self.search_id, "daemon.start",
                f"daemon pid {os.getpid()} started: {len(self.slots)} slot(s), {self.slot_source}; "
                f"{len(self.unconsumed)} result(s) to feed the controller",
                {"pid": os.getpid(), "recovery": stats, "slots": [s.to_dict() for s in self.slots],
                 "controller_version": self.controller.version,
                 "controller_notes": self.controller_notes})
            log.info("search %s: %d slot(s) (%s), recovery %s", self.name, len(self.slots),
                     self.slot_source, stats)
        except BaseException:
            self._drop_lease()
            self.lock.release()
            raise
        self._write_state(time.time(), force=True)

    def _take_lease(self) -> None:
        """Hold the search's daemon lease in the store (:mod:`adsearch.daemon.lease`): refuse
        to start while another daemon runs this search, reached from any directory."""
        from adsearch.daemon.lease import held_elsewhere, holder_alive, new_lease

        lease = new_lease(self.search_id, str(self.run.path))
        holder = self.store.acquire_daemon_lease(
            lease, lambda h: holder_alive(h, self.cfg.lease_seconds))
        if holder is not None:
            raise DaemonError(held_elsewhere(self.name, holder))
        self.lease = lease
        self._lease_beat = time.time()

    def _renew_lease(self, now: float) -> None:
        """Move the lease's heartbeat every ``heartbeat_seconds``. A lease another daemon
        took over (this one's heartbeat lapsed for ``lease_seconds``, e.g. the host was
        suspended) is the other's: this daemon kills its children without settling them
        (their trials are the other daemon's now) and exits leaving the store alone."""
        if self.lease is None or now - self._lease_beat < self.cfg.heartbeat_seconds:
            return
        self._lease_beat = now
        if self.store.renew_daemon_lease(self.search_id, self.lease.owner, now):
            return
        holder = self.store.daemon_lease(self.search_id)
        who = (f"pid {holder.pid} on {holder.host} (run directory {holder.run_dir})"
               if holder is not None else "no daemon")
        self.lease, self.lease_lost = None, True
        self.slotset.abandon("another daemon took the search over")
        self.fatal = self.fatal or (
            f"this daemon lost the search's lease in the store to {who}: its heartbeat lapsed "
            f"for more than {self.cfg.lease_seconds:g} s; it exits and leaves the search to "
            "that daemon")
        log.error("%s", self.fatal)
        self.request_stop(cold=True, reason="lease-lost")

    def _drop_lease(self) -> None:
        """Give the store's daemon lease back (at exit; a failed start)."""
        if self.lease is None:
            return
        try:
            self.store.release_daemon_lease(self.search_id, self.lease.owner)
        except AdsearchError as exc:  # the store is gone: the lease dies with this process
            log.warning("could not release the daemon lease: %s", exc)
        self.lease = None

    def _check_gpus(self) -> None:
        """GPU slots for a real task need CUDA; refuse now rather than fail every child."""
        if self.cfg.task == "synthetic" or all(s.gpu is None for s in self.slots):
            return
        import torch

        if not torch.cuda.is_available():
            raise DaemonError(
                f"{self.slot_source}, but torch sees no CUDA device (torch.cuda.is_available() "
                "is False); run on CPU with --workers N, or fix the GPU setup"
            )

    def _restore_controller(self, make_controller: Callable[..., Controller]) -> Controller:
        if self.fresh_controller:  # written by _forget_old_controller once every check passed
            return make_controller(self.cfg.controller, self.space, self.cfg.controller_config,
                                   seed=self.cfg.seed)
        recorded = self.store.consumed_trial_ids(self.search_id)
        if not self.ckpts.checkpoints():
            if recorded:
                raise CheckpointError(
                    f"the store records controller checkpoints for search {self.name!r} but "
                    f"{self.ckpts.directory} holds none; restore that directory to resume, or "
                    f"`adsearch resume {self.name} --fresh-controller` to start a new "
                    "controller fed with every stored result"
                )
            return make_controller(self.cfg.controller, self.space, self.cfg.controller_config,
                                   seed=self.cfg.seed)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ctrl, consumed = self.ckpts.load_latest(self.space)
        self.consumed = set(consumed)
        notes = self.ckpts.last_loaded.notes if self.ckpts.last_loaded else ()
        missing = sorted(self.consumed - recorded)
        if missing:  # the daemon died between saving the checkpoint and recording it
            loaded = self.ckpts.last_loaded
            path = loaded.info.path if loaded else ""
            ev = loaded.event if loaded else None
            self.store.add_checkpoint(
                self.search_id, ctrl.version, str(path), missing,
                event=(str(ev["kind"]), str(ev["message"]), dict(ev["data"])) if ev else None)
        if notes:
            self.store.log_event(self.search_id, "controller.fallback",
                                 "; ".join(notes), {"version": ctrl.version})
            name = self.ckpts.last_loaded.info.path.name if self.ckpts.last_loaded else "?"
            self.controller_notes.append(
                f"checkpoint fallback: restored v{ctrl.version} from {name}; " + "; ".join(notes))
        return ctrl

    def _forget_old_controller(self) -> None:
        """``--fresh-controller``: move the old checkpoint files aside (kept, not read) and, in
        one transaction, drop the store's checkpoint records and log ``controller.fresh``:
        the new controller has seen no result, so every stored one is fed to it again."""
        old = self.ckpts.checkpoints()
        aside = self.run.checkpoint_dir / f"replaced-{time.strftime('%Y%m%dT%H%M%S')}"
        if old:
            aside.mkdir(parents=True, exist_ok=True)
            for info in old:
                os.replace(info.path, aside / info.path.name)
        self.unconsumed = [tid for tid, _ in self.store.reward_series(self.search_id)
                           if tid not in self.recheck_ids]
        self.consumed = set()
        moved = f"; {len(old)} old checkpoint file(s) moved to {aside}" if old else ""
        message = (f"fresh {self.cfg.controller} controller (resume --fresh-controller): "
                   f"{len(self.unconsumed)} stored result(s) to feed it{moved}")
        self.controller_notes.append(message)
        self.store.forget_checkpoints(self.search_id, (
            "controller.fresh", message,
            {"refeed": len(self.unconsumed), "moved": [i.path.name for i in old],
             "moved_to": str(aside) if old else None}))

    # ------------------------------------------------------------------ the loop
    def loop(self, now: float) -> bool:
        """One pass; returns False when the daemon should shut down."""
        self._loops += 1
        if self.max_loops is not None and self._loops >= self.max_loops and not self.stop_level:
            self.request_stop(reason="max_loops")
        if self.stop_level >= COLD:
            self._cold_stop()
            return False
        if self.stop_level and not self._stopping_written:
            # the store says so at once, so no worker anywhere claims new work (the claim
            # statement checks the search state) while running children finish
            self.store.set_search_state(self.search_id, "stopping")
            self._stopping_written = True
        if self.stop_level and self.slotset.prepared:
            self._release_prepared()
        self._reap(now)
        if self.shared_queue and now - self._collected_at >= 0.5:
            self._collected_at = now
            for trial, result in self._collect_finished():  # what workers elsewhere stored
                failed = result is None or bool((result.metrics or {}).get("bad_pattern"))
                self._observe(failed, trial.error, None)
            self._check_worker_failed()
        over_time = (self.cfg.budget_minutes is not None
                     and self.elapsed(now) >= self.cfg.budget_minutes * 60)
        self.wall_spent = self.wall_spent or over_time
        if over_time and not self.stop_level and not self.rechecking():
            self.request_stop(reason="budget-minutes")
        if not self.stop_level:  # freed slots first: scheduling latency is what keeps them busy
            self._dispatch(now)
        self._heartbeat(now)
        self._renew_lease(now)
        self._check_rungs(now)
        self._update_controller(final=False)
        if not self.stop_level:
            if not self.rechecking():  # the re-check stage draws no new search trials
                self._produce()
            self._dispatch(now)
        done = self._check_done()
        self._write_state(now, force=done)
        return not done

    def _check_rungs(self, now: float) -> None:
        """Stop pruning at a rung whose ranking disagrees with the full budget's (issue 19
        §3, :mod:`adsearch.daemon.agreement`); at most every 2 s (one indexed query)."""
        from dataclasses import replace

        from adsearch.daemon.agreement import check_rungs

        if self.cfg.rung_check_min is None or self.scheduler.schedule is None:
            return
        if now - getattr(self, "_rungs_checked_at", 0.0) < 2.0:
            return
        self._rungs_checked_at = now
        for a in check_rungs(self.store, self.search_id, self.cfg):
            self.cfg = replace(self.cfg, rungs_off=sorted([*self.cfg.rungs_off, a.rung]))
            log.info("search %s: pruning stopped at rung %g (Spearman %.2f over %d pairs)",
                     self.name, a.rung, a.spearman or 0.0, a.n)

    def elapsed(self, now: float) -> float:
        return self._elapsed_base + (now - self._started)

    def _check_worker_failed(self) -> None:
        """An ``adsearch worker`` found a code error in a child and failed the search: stop."""
        if self.fatal or self.store.get_search_by_id(self.search_id).state != "failed":
            return
        why = next((ev.message for ev in reversed(self.store.events(self.search_id, limit=50))
                    if ev.kind == "worker.code_error"), "an adsearch worker failed the search")
        self.fatal = why
        if not self.stop_level:
            self.request_stop(reason="code-error")

    def budget_spent(self) -> bool:
        """The search's budget is spent: the wall-time budget ran out, or every trial of the
        trial budget has ended (re-check trials are not part of it)."""
        if self.stop_reason == "budget-minutes" or self.wall_spent:
            return True
        return (self.cfg.budget_trials is not None and self.n_trials >= self.cfg.budget_trials
                and not self.active - self.recheck_ids)

    def rechecking(self) -> bool:
        """Re-check trials are queued or running: the search is in its re-check stage."""
        return bool(self.active & self.recheck_ids)

    def _check_done(self) -> bool:
        if self.children:
            return False
        if self.budget_spent() and not self.fatal:
            if self.shared_queue and not self._remote_settled():
                return False
            if self._recheck_open():
                if self.stop_level and self.stop_reason != "budget-minutes":
                    return True  # a warm stop asked for: `resume` completes the re-check
                self._run_on()
                return False
            self._finish_search()
            return True
        return bool(self.stop_level)  # a warm stop: queued trials wait for `resume`

    def _recheck_open(self) -> bool:
        """The re-check stage (:mod:`adsearch.daemon.recheck`): True while it has trials to
        run. Called once the search budget is spent and nothing runs: it stales the search
        trials that never ran, then enqueues the re-check trials still missing (all of them
        in one transaction), so a daemon killed at any point completes the stage on resume
        without duplicating a trial."""
        if self.rechecking():
            return True
        if not self.cfg.rechecks():
            return False
        from adsearch.daemon import recheck

        self._stale_unrun(sorted(self.active - self.recheck_ids))
        items = recheck.plan(self.store, self.search_id, self.cfg)
        if not items:
            return False
        records = self.store.add_trials(self.search_id, items)
        ids = [r.id for r in records]
        self.recheck_ids.update(ids)
        self.queue.push(ids)
        self.active.update(ids)
        patterns = sorted({r.pattern_hash for r in records})
        self.store.log_event(
            self.search_id, "recheck.start",
            f"re-check: {len(patterns)} top pattern(s) trained again on new seeds "
            f"({len(ids)} trial(s): {ids[0]}-{ids[-1]}); export picks on the mean",
            {"trial_ids": ids, "patterns": patterns, "top": self.cfg.recheck_top,
             "seeds": self.cfg.recheck_seeds})
        log.info("search %s: re-check of %d pattern(s), %d trial(s)", self.name, len(patterns),
                 len(ids))
        return True

    def _run_on(self) -> None:
        """The wall budget's warm stop ended the search stage; the re-check runs after it:
        take the stop back (the store says ``running`` again, so workers claim its trials)."""
        if not self.stop_level:
            return
        self.stop_level = 0
        self.stop_reason = ""
        self._stopping_written = False
        self.store.set_search_state(self.search_id, "running")

    def _remote_settled(self) -> bool:
        """Nothing runs on `adsearch worker` hosts, and every trial they finished has been
        collected (:meth:`_collect_finished` runs each pass): only then may the rest be staled.
        Their trials finish first, as the daemon's own children do, so their results count; a
        dead worker's lease expires and its trial is requeued, then staled."""
        if self.store.counts(self.search_id).get("running", 0):
            return False
        queued = {t.id for t in self.store.trials(self.search_id, states=["queued"])}
        return not (self.active - queued)

    def _finish_search(self) -> None:
        """Budget spent, nothing running anywhere: stale what never ran (queued trials), feed
        the last partial batch, finish."""
        self._stale_unrun(sorted(self.active))
        self._update_controller(final=True)
        self.finished = True

    def _stale_unrun(self, left: list[int]) -> None:
        """Queued trials that never ran when the budget was spent: ``stale``, off the queue."""
        for tid in left:
            self.store.finish_trial(tid, None, {"reason": "budget spent before it ran"}, [], 0.0,
                                    state="stale")
        self.queue.discard(left)
        self.active.difference_update(left)

    # ------------------------------------------------------------------ controller
    def _update_controller(self, final: bool) -> None:
        from adsearch.controller import Sample

        if self.cfg.controller == "fixed":  # a verify search: planned trials, nothing to learn
            self.consumed.update(self.unconsumed)
            self.unconsumed.clear()
            return
        bs = self.cfg.batch_size
        while len(self.unconsumed) >= bs or (final and self.unconsumed):
            ids = self.unconsumed[:bs]
            # the one rule for what the controller learns from (failures, stopped children)
            rewards = learned_rewards(self.store, self.search_id, ids, self.cfg.failure_reward,
                                      fed=self.consumed)
            batch = []
            for tid in ids:
                t = self.store.get_trial(tid)
                sample = Sample.from_dict({"tokens": t.tokens, "logp": t.logp,
                                           "version": t.controller_version}, space=self.space)
                batch.append((sample, rewards[tid]))
            stats = self.controller.update(batch)
            # best so far: full-budget results only (a stopped child's value is not one)
            top = self.store.top_trials(self.search_id, 1, full_only=True, succeeded_only=True,
                                        purposes=SEARCH_PURPOSES)  # no re-check run
            best = top[0][1].reward if top else None
            self.consumed.update(ids)
            message = (f"controller v{stats.version}: mean reward {stats.mean_reward:.4f}, "
                       f"baseline {stats.baseline:.4f}, entropy {stats.entropy:.3f}")
            data = {**stats.to_dict(), "trial_ids": ids,
                    "rewards": [rewards[t] for t in ids], "best_so_far": best}
            event = {"kind": "controller.update", "message": message, "data": data}
            path = self.ckpts.save(self.controller, self.consumed, event=event)
            # the checkpoint record, its event and the learned rewards in one transaction: a
            # kill keeps all or none (and none is rebuilt from the file at the next start)
            self.store.add_checkpoint(self.search_id, self.controller.version, str(path), ids,
                                      event=("controller.update", message, data),
                                      learned=rewards)
            del self.unconsumed[: len(ids)]
            self.controller_stats = stats.to_dict()

    def _produce(self) -> None:
        """Draw new trials and pass them through the admission gate
        (:mod:`adsearch.daemon.dedup`): canonical patterns, the drop cap, the cache. A refused
        pattern or a cache hit is stored ``done`` at once (the controller gets it in finish
        order); a duplicate of a trial still queued or running waits for it in memory."""
        from adsearch.daemon.dedup import Admission, Admitted, task_site_maps
        from adsearch.patterns.canonical import canonical_patterns
        from adsearch.store import NewTrial

        def take(out: Admitted) -> None:
            self.queue.push(out.queued)
            self.active.update(out.queued)
            self.unconsumed.extend(out.finished)

        adm = getattr(self, "admission", None)
        if adm is not None:
            take(adm.resolve(self.active))  # duplicates whose first copy has ended
        n_slots = len(self.slots)
        pending = len(self.queue)
        idle = n_slots - len(self.children)
        want = max(0, self.cfg.effective_lookahead(n_slots) + idle - pending)
        ahead = len(self.active) + len(self.unconsumed) + (adm.n_waiting if adm else 0)
        want = min(want, max(0, self.cfg.effective_max_ahead(n_slots) - ahead))
        if self.cfg.budget_trials is not None:
            want = min(want, self.cfg.budget_trials - self.n_trials)
        if want <= 0:
            return
        if adm is None:  # made at the first draw (a verify search never draws)
            adm = self.admission = Admission(self.store, self.search_id, self.cfg, self.space,
                                             task_site_maps(self.task, self.task_config))
        from adsearch.daemon.enqueue import next_enqueued

        def child_seed(k: int) -> int:
            if self.cfg.child_seed is not None:
                return self.cfg.child_seed
            return random.Random(f"{self.cfg.seed}-{self.n_trials + k}").randrange(2**31)

        # issue 20: enqueued patterns (--enqueue, --seed-baselines) before any draw
        items: list[Any] = next_enqueued(self.store, self.search_id, self.cfg, self.space,
                                         self.controller, adm.maps, want, child_seed)
        for sample in self.controller.sample(want - len(items)) if want > len(items) else []:
            pats = [p.to_dict() for p in canonical_patterns(sample.patterns)]
            seed = self.cfg.child_seed
            if seed is None:
                seed = random.Random(f"{self.cfg.seed}-{self.n_trials + len(items)}").randrange(2**31)
            items.append(NewTrial(pattern=pats, pattern_hash=pattern_hash(pats),
                                  tokens=list(sample.tokens), controller_version=sample.version,
                                  logp=sample.logp, seed=seed))
        self.n_trials += len(items)  # drawn: stored now, or waiting for a first copy
        take(adm.admit(items, self.active))

    # ------------------------------------------------------------------ state file
    def wait_reasons(self) -> list[str]:
        """Why trials or slots wait right now, in words (shown by ``adsearch status``)."""
        n_slots = len(self.slots)
        pending = (len(self.queue) if hasattr(self, "queue") else 0) + len(self.slotset.prepared)
        idle = n_slots - len(self.children)
        out = []
        if self.rechecking():
            left = len(self.active & self.recheck_ids)
            out.append(f"re-check: {len(self.recheck_ids) - left} of {len(self.recheck_ids)} "
                       "done (the top patterns on more seeds; export picks on the mean)")
        if self.stop_level:
            why = {"budget-minutes": "wall-time budget spent", "max_loops": "burst limit reached"}
            out.append(f"stopping ({why.get(self.stop_reason, 'warm stop requested')}): no new "
                       f"trials; waiting for {len(self.children)} running trial(s) to finish")
        elif pending and not idle:
            out.append(f"{pending} trial(s) queued: all {n_slots} slot(s) busy")
        if idle and not pending and not self.stop_level:
            if self.cfg.budget_trials is not None and self.n_trials >= self.cfg.budget_trials:
                out.append(f"{idle} slot(s) idle: trial budget spent ({self.cfg.budget_trials} "
                           "trials drawn), finishing the running ones")
            elif len(self.active) + len(self.unconsumed) >= self.cfg.effective_max_ahead(n_slots):
                out.append(f"{idle} slot(s) idle: controller waiting for a batch "
                           f"({len(self.unconsumed)}/{self.cfg.batch_size} results in, "
                           f"max_ahead {self.cfg.effective_max_ahead(n_slots)} drawn trials)")
        return out

    def _write_state(self, now: float, force: bool = False) -> None:
        if not force and now - self._last_state < 0.5:
            return
        self._last_state = now
        window = max(1e-9, now - self._started)
        lat = sorted(self.slotset.latencies)
        state = {
            "pid": os.getpid(), "search": self.name, "updated_at": now,
            "started_at": self._started, "stop_level": self.stop_level,
            "stop_reason": self.stop_reason, "finished": self.finished,
            "slot_source": getattr(self, "slot_source", ""),
            "slots": [{**s.to_dict(), **({"trial_id": c.trial_id, "pid": c.pid,
                                          "started_at": c.started_at}
                                         if (c := self.children.get(s.index)) else {}),
                       "busy_s": self.slotset.busy.get(s.index, 0.0)}
                      for s in getattr(self, "slots", [])],
            "waiting": self.wait_reasons() if hasattr(self, "cfg") else [],
            "controller": {"kind": self.cfg.controller, "version": self.controller.version,
                           "baseline": self.controller.baseline, **self.controller_stats,
                           "unconsumed": len(self.unconsumed), "notes": self.controller_notes},
            "scheduling": {"starts_measured": len(lat), "window_s": window,
                           "median_latency_s": lat[len(lat) // 2] if lat else None},
        }
        write_json_atomic(self.run.state_file, state, durable=False)
        if force or now - self._last_elapsed >= 5.0:
            self._last_elapsed = now
            write_json_atomic(self.run.elapsed_file, {"seconds": self.elapsed(now)}, durable=force)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        """Leave the store consistent and release the lock. Never leaves a child behind."""
        now = time.time()
        try:
            if self.lease_lost:  # the search is another daemon's now: leave its state alone
                return
            if self.children or self.slotset.prepared:  # an exception ended the loop
                self._cold_stop()
            if self.finished and not self.fatal:  # a search with no result is no success
                self.fatal = self._nothing_succeeded()
            if self.fatal:  # a code error or the failure breaker: never "finished"
                state = "failed"
            elif self.finished:
                state = "finished"
            elif self.stop_level:
                state = "stopped"
            else:
                state = "failed"
            self.store.set_search_state(self.search_id, state)
            self.store.log_event(self.search_id, f"daemon.{state}",
                                 f"daemon pid {os.getpid()} exited: search {state}"
                                 + (f": {self.fatal}" if self.fatal else ""),
                                 {"stop_reason": self.stop_reason, "fatal": self.fatal})
            self._write_state(now, force=True)
        finally:
            self._drop_lease()
            self.store.close()
            self.lock.release()

    def _nothing_succeeded(self) -> str | None:
        """Why a search whose budget is spent failed although nothing stopped it: not one
        child succeeded (every trial was a bad pattern or given up, or none ended in time).
        None when at least one child has a result that is not a bad pattern."""
        counts = self.store.counts(self.search_id)
        n_bad, last = self.store.bad_patterns(self.search_id)
        if counts.get("done", 0) > n_bad:
            return None
        given_up = counts.get("failed", 0)
        if not n_bad and not given_up:
            return (f"the budget was spent before any child finished ({sum(counts.values())} "
                    f"trial(s) drawn, none ended): there is no result; give it more with "
                    f"`adsearch resume {self.name} --budget-minutes M`")
        last = last or next((t.error for t in self.store.trials(self.search_id,
                                                                 states=["failed"])), None)
        first = (last or "no error text").splitlines()[0]
        return (f"no child succeeded: {n_bad} bad pattern(s) and {given_up} trial(s) given "
                f"up, not one result (last error: {first}); so many failures look like a "
                "problem of the task, its config or the space, not of the patterns: fix it, "
                f"then `adsearch resume {self.name} --budget-trials N` (or start a new search)")
