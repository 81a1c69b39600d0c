"""What the daemon does with a trial it draws, before any child starts (issue 19 §4, **ours**):
no child trained twice, no child that wipes its network.

Every trial the controller draws passes :meth:`Admission.admit` once, at draw time in the
daemon (:meth:`~adsearch.daemon.loop.Daemon._produce`), so whatever runs the children (the
daemon's own slots, ``adsearch worker`` hosts, Ray) never sees a trial that need not train:

1. **Canonical pattern.** The trial's stored ``pattern`` and ``pattern_hash`` are of the
   canonical form (:mod:`adsearch.patterns.canonical`: an off site's fields are inert, all
   off is *none*); its ``tokens`` and ``logp`` stay the controller's own.
2. **The drop cap** (:mod:`adsearch.ops.cap`): a pattern that drops a whole feature map at
   every placement, or more than ``--max-drop`` of a site's units, is *refused*: stored at
   once as a ``done`` bad pattern (the failure reward, ``metrics["bad_pattern"]`` and
   ``metrics["refused"]``, the reason as its error, event ``trial.refused``); no child
   process runs. The check is deterministic, so a second draw of the pattern is refused
   again by the same computation (which is what reusing the refusal would give).
3. **The cache.** The key of a trained result is ``(pattern_hash, seed)`` within the search,
   plus the search's *fidelity* (:func:`fidelity`: task, task config, space, child budget,
   rung schedule). A search's fidelity cannot change (``resume`` changes budgets only), so
   every result of the search has it; it is recorded in each hit's event. A drawn trial whose
   key was already trained reuses the stored result: it is stored ``done`` at once with the
   same reward, metrics and curve, ``seconds`` 0 (no child ran), ``results.cache_of`` = the
   trial that trained, and an event ``trial.cache_hit``. Which results may be reused:

   - a successful full-budget result (not truncated);
   - a result truncated at a rung that still prunes (the same schedule stops it at the same
     rung with the same value; a rung the daemon no longer prunes at, ``rungs_off``, would
     let the copy train on, so that result is not reused);
   - never a bad pattern from a child: :func:`~adsearch.daemon.failures.classify` counts an
     exception it does not know as a bad pattern, so a child's failure may be a crash rather
     than a property of the pattern; the copy trains (and the failure breaker sees it).

   The hit is a ``done`` trial like any other: the controller gets its reward, in finish
   order. It is not fed to the failure breaker (no child ran).
4. **A duplicate drawn while its first copy is queued or running** waits for it, in memory
   (it is not stored, not queued, and counts as drawn for the trial budget and ``max_ahead``):
   when the first copy ends, :meth:`Admission.resolve` stores the waiting draws as hits of its
   result, or, when that result may not be reused (a failure, a requeue given up), lets the
   first of them train and the others wait on it. A stop or crash before then drops the
   waiting draws, as if they had not been drawn (the controller learns only from stored
   trials; ``resume`` draws again).

Stored trials are written with their result and event in one transaction
(:meth:`~adsearch.store.Store.add_finished_trials`): a crash keeps all of a hit or none.
Only the daemon draws, so the cache needs no lock: a hit never races another draw.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adsearch import reward
from adsearch.daemon.config import SearchConfig
from adsearch.patterns import SearchSpace, decode_patterns

if TYPE_CHECKING:
    from adsearch.store.contract import StoreContract
    from adsearch.store.records import FinishedTrial, NewTrial, ResultRecord, TrialRecord
    from adsearch.tasks.registry import Task

log = logging.getLogger("adsearch.daemon")

StoredRun = tuple["TrialRecord", "ResultRecord | None"]
"""A stored run of a pattern: the trial and its result (None while it has none)."""

Key = tuple[str, int]
"""A trained result's key within a search: ``(pattern_hash, seed)``."""


def fidelity(cfg: SearchConfig) -> dict[str, Any]:
    """What a child of ``cfg`` trains, besides its pattern and seed: the task and its config,
    the space, the child budget and the rung schedule (its rungs set the evaluation points)."""
    sched = cfg.schedule()
    return {"task": cfg.task, "task_config": cfg.task_config, "space": cfg.space,
            "budget": cfg.child_budget().to_dict(),
            "rungs": list(sched.rungs) if sched else [], "top": sched.top if sched else None,
            "keep": sched.keep if sched else None}


def fidelity_key(cfg: SearchConfig) -> str:
    """A short hash of :func:`fidelity`."""
    blob = json.dumps(fidelity(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def task_site_maps(task: Task,
                   task_config: Any) -> tuple[bool, list[Any] | None, str | None]:
    """``(applies, maps, note)``: whether the drop cap applies to ``task``, the per-site
    ``(H, W)`` maps it states (None: not stated, the map-free rules of
    :mod:`adsearch.ops.cap` apply) and why they are missing (None when stated or not needed).

    A task states its maps with an optional method ``site_maps(config)``: a list with, per
    site, the maps its patterns act on (empty for sequence sites, whose figures need none);
    ``None`` from it means the task trains no network (the synthetic task by default), so
    no cap applies."""
    fn = getattr(task, "site_maps", None)
    if fn is None:
        return True, None, f"task {getattr(task, 'name', '?')} states no site maps"
    try:
        maps = fn(task_config)
    except Exception as exc:  # noqa: BLE001 - e.g. missing data: the children will say so;
        # the search goes on with the map-free rules rather than die in its daemon
        return True, None, f"site maps unknown ({type(exc).__name__}: {exc})"
    if maps is None:
        return False, None, None
    return True, [tuple(tuple(int(v) for v in shape) for shape in site) for site in maps], None


@dataclass(frozen=True)
class Admitted:
    """What one :meth:`Admission.admit` or :meth:`Admission.resolve` did: ``queued`` (trial
    ids to push to the queue: they train), ``finished`` (trial ids stored ``done`` at once,
    cache hits and refusals, in the order stored: the controller's finish order)."""

    queued: list[int]
    finished: list[int]


class Admission:
    """The daemon's gate between the controller's draws and the queue (module docstring).

    Args:
        store: the search's store.
        search_id: the search.
        cfg: its config (``max_drop``, ``failure_reward``, the fidelity).
        space: the space its patterns belong to.
        maps: what :func:`task_site_maps` says of the task.
    """

    def __init__(self, store: StoreContract, search_id: int, cfg: SearchConfig, space: SearchSpace,
                 maps: tuple[bool, list[Any] | None, str | None]) -> None:
        self.store = store
        self.search_id = search_id
        self.cfg = cfg
        self.space = space
        self.cap_applies, self.maps, self.maps_note = maps
        self.fidelity = fidelity_key(cfg)
        self.waiting: dict[int, list[NewTrial]] = {}  # first copy's trial id -> waiting draws
        store.log_event(search_id, "dedup.start", self.describe(),
                        {"max_drop": cfg.max_drop, "cap": self.cap_applies, "maps": self.maps,
                         "maps_note": self.maps_note, "fidelity": self.fidelity,
                         "child_seed": cfg.child_seed})

    def describe(self) -> str:
        """One line: what the gate checks in this search (logged when the daemon starts)."""
        if not self.cap_applies:
            cap = "no drop cap (the task trains no network)"
        elif self.maps is not None:
            shown = "; ".join(f"site {i}: " + ", ".join(f"{h}x{w}" for h, w in site)
                              for i, site in enumerate(self.maps) if site)
            cap = f"drop cap {self.cfg.max_drop:.0%}" + (f" at the site maps ({shown})"
                                                        if shown else "")
        else:
            cap = f"drop cap {self.cfg.max_drop:.0%} by the map-free rules ({self.maps_note})"
        seed = ("every child seed " + str(self.cfg.child_seed) if self.cfg.child_seed is not None
                else "a seed per trial (a repeated pattern is a new measurement)")
        return (f"admission: canonical patterns; {cap}; cache of (pattern, seed) at fidelity "
                f"{self.fidelity}, {seed}")

    @property
    def n_waiting(self) -> int:
        """Draws waiting for their first copy to end (drawn, not stored)."""
        return sum(len(v) for v in self.waiting.values())

    # ------------------------------------------------------------------ the cap
    def refusal(self, pattern: list[Any]) -> str | None:
        """Why a stored pattern (dicts) must not train under the drop cap, or None."""
        if not self.cap_applies:
            return None
        if len(pattern) == 1 and isinstance(pattern[0], dict) and "kind" in pattern[0]:
            return None  # a planned baseline spec (verify): not a pattern
        from adsearch.ops.cap import refusal

        pats = list(decode_patterns(pattern, self.space))
        return refusal(pats, self.maps, float(self.cfg.max_drop))

    # ------------------------------------------------------------------ admitting draws
    def admit(self, items: Sequence[NewTrial], active: set[int], *,
              waited: bool = False) -> Admitted:
        """Store, queue or hold each drawn trial (``NewTrial`` with its canonical pattern and
        hash): refused, a cache hit, waiting for its first copy, or to train. ``waited``: the
        items waited for their first copy (said in their hit events)."""

        finished: list[FinishedTrial] = []
        to_train: list[NewTrial] = []
        first: dict[Key, int] = {}  # key -> index in to_train (a duplicate within the draw)
        later: list[tuple[int, NewTrial]] = []
        runs = self._runs({it.pattern_hash for it in items})
        for it in items:
            reason = self.refusal(list(it.pattern))
            if reason is not None:
                finished.append(self._refused(it, reason))
                continue
            key = (it.pattern_hash, int(it.seed))
            if key in first:
                later.append((first[key], it))
                continue
            hit, wait = self._source(runs.get(key, []), active)
            if hit is not None:
                finished.append(self._hit(it, *hit, waited=waited))
            elif wait is not None:
                self.waiting.setdefault(wait, []).append(it)
            else:
                first[key] = len(to_train)
                to_train.append(it)
        queued = [r.id for r in self.store.add_trials(self.search_id, to_train)] if to_train else []
        for index, it in later:
            self.waiting.setdefault(queued[index], []).append(it)
        done = self.store.add_finished_trials(self.search_id, finished) if finished else []
        return Admitted(queued, [r.id for r in done])

    def resolve(self, active: set[int]) -> Admitted:
        """Settle the draws whose first copy is no longer queued or running: each is admitted
        again, so it reuses that copy's result or (when the result may not be reused) the first
        of them trains and the others wait on it."""
        ended = [tid for tid in self.waiting if tid not in active]
        if not ended:
            return Admitted([], [])
        items = [it for tid in sorted(ended) for it in self.waiting.pop(tid)]
        return self.admit(items, active, waited=True)

    # ------------------------------------------------------------------ lookups
    def _runs(self, hashes: set[str]) -> dict[Key, list[StoredRun]]:
        """Trials of this search that trained (or will) a pattern of ``hashes``, by key,
        oldest first: cache copies and refusals left out, their results where stored."""
        out: dict[Key, list[StoredRun]] = {}
        if not hashes:
            return out
        for trial, result in self.store.pattern_runs(self.search_id, hashes):
            if result is not None and (result.cache_of is not None
                                       or (result.metrics or {}).get("refused")):
                continue
            out.setdefault((trial.pattern_hash, int(trial.seed)), []).append((trial, result))
        return out

    def _source(self, runs: list[StoredRun], active: set[int]
                ) -> tuple[tuple[TrialRecord, ResultRecord] | None, int | None]:
        """``(hit, wait)``: the oldest run whose result may be reused, else the oldest run
        still queued or running (to wait for), else neither (the draw trains)."""
        for trial, result in runs:
            if trial.state == "done" and result is not None and self.reusable(result):
                return (trial, result), None
        for trial, _ in runs:
            if trial.id in active:
                return None, trial.id
        return None, None

    def reusable(self, result: ResultRecord) -> bool:
        """Whether a stored result may stand for another child of the same key (module
        docstring, point 3)."""
        m = result.metrics or {}
        if result.reward is None or m.get("bad_pattern"):
            return False
        if not m.get("truncated"):
            return True
        rung = m.get("truncated_at_rung")
        sched = self.cfg.schedule()
        if rung is None or sched is None:
            return False
        off = self._rungs_off()
        return any(abs(float(rung) - r) < 1e-9 for r in sched.rungs) and not any(
            abs(float(rung) - float(r)) < 1e-9 for r in off)

    def _rungs_off(self) -> list[float]:
        """Rungs at which the daemon no longer prunes (``rungs_off`` of the stored config,
        written while the search runs when a rung ranks unlike the full budget)."""
        config = self.store.get_search_by_id(self.search_id).config or {}
        return [float(r) for r in config.get("rungs_off") or []]

    # ------------------------------------------------------------------ stored outcomes
    def _refused(self, it: NewTrial, reason: str) -> FinishedTrial:
        from adsearch.store.records import FinishedTrial

        max_drop = float(self.cfg.max_drop)
        return FinishedTrial(
            trial=it, reward=reward.failure(self.cfg.failure_reward),
            metrics={"bad_pattern": 1.0, "refused": 1.0, "max_drop": max_drop}, curve=[],
            seconds=0.0, error=reason,
            event=("trial.refused", f"refused, no child: {reason}",
                   {"pattern_hash": it.pattern_hash, "seed": int(it.seed), "max_drop": max_drop}))

    def _hit(self, it: NewTrial, trial: TrialRecord, result: ResultRecord, *,
             waited: bool) -> FinishedTrial:
        from adsearch.store.records import FinishedTrial

        return FinishedTrial(
            trial=it, reward=result.reward, metrics=dict(result.metrics or {}),
            curve=list(result.curve or []), seconds=0.0, error=None, cache_of=trial.id,
            event=("trial.cache_hit",
                   f"cache hit: reused trial {trial.id}'s result (same canonical pattern, "
                   f"fidelity and seed {int(it.seed)}); no child trained",
                   {"cache_of": trial.id, "pattern_hash": it.pattern_hash, "seed": int(it.seed),
                    "fidelity": self.fidelity, "waited": waited,
                    "truncated": bool((result.metrics or {}).get("truncated"))}))
