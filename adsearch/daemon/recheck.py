"""The re-check before export: the top patterns trained again on more seeds (issue 19 §5).

A search ranks patterns on one child each, and a child's value is noisy. The pattern with
the best single value is then more likely to have been lucky than to be the best (the
winner's curse), and exporting it ships the luck. So a search ends with a **re-check stage**
(**ours**; the paper exports the best single child):

1. **When.** Once the search budget is spent (the trial budget drawn and ended, or the wall
   budget ``--budget-minutes`` reached and the running children finished; queued search
   trials that never ran are staled first), the daemon enqueues the re-check trials, runs
   them through the same queue and executors as any trial (so ``adsearch worker`` and Ray
   serve them too), and only then finishes. The wall budget is the *search's* budget: the
   re-check runs after it, and ``status`` counts its children in the ETA.
2. **What.** The candidates (:func:`candidates`) are the ``recheck_top`` best distinct
   patterns (by ``pattern_hash``) among the done, full-budget, successful trials that are not
   re-check trials, best single value first (ties: first finished). Each is trained on
   ``recheck_seeds`` new seeds (:func:`plan`): the same pattern and tokens, a seed it never
   ran with, the full budget and no early stopping (``child_spec`` gives a re-check trial
   no rungs), ``purpose = 'recheck'``.
3. **Not a sample, not a cost.** A re-check child is not a draw of the policy, so it never
   reaches the controller, and it does not count against ``--budget-trials``.
4. **Crash-safe.** :func:`plan` returns only what is missing: a candidate that already has
   ``recheck_seeds`` re-check trials (in any state: a failed one is not replaced) gets none,
   and one :meth:`Store.add_trials` call stores a plan whole or not at all. So a daemon
   killed at any point and resumed completes the stage without duplicating a trial.
5. **The score** of a pattern (:class:`PatternScore`) is the mean over every full-budget
   result of that pattern (its first result included, every purpose and seed). A re-check
   run that fails as a bad pattern counts at its stored failure reward: a pattern that
   diverges on one seed in three is not a safe winner. Results stopped early (truncated) are
   left out (they were measured before the end of training), and so are trials that failed
   without a result.
6. **Export** (:func:`ranking`): patterns with a re-check result, by mean (ties: the better
   single value), then the others by their single value, each marked as not re-checked,
   with a warning when the re-check is missing or incomplete.

No torch here: ``status`` and ``export`` read it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adsearch.daemon.config import SearchConfig
    from adsearch.store import NewTrial
    from adsearch.store.contract import StoreContract
    from adsearch.store.records import ResultRecord, TrialRecord

RECHECK = "recheck"
"""``trials.purpose`` of a re-check trial."""

SEARCH_PURPOSES: tuple[str, ...] = ("search", "enqueued")
"""Purposes of the trials that make up the search itself (they count against its budget)."""

ENDED = ("done", "failed", "stale")


@dataclass(frozen=True)
class Run:
    """One full-budget result of a pattern: which trial, seed and purpose, and its reward."""

    trial_id: int
    seed: int
    reward: float
    purpose: str

    def to_dict(self) -> dict[str, Any]:
        return {"trial_id": self.trial_id, "seed": self.seed, "reward": self.reward,
                "purpose": self.purpose}


@dataclass(frozen=True)
class PatternScore:
    """A pattern's results over its seeds.

    ``trial_id`` and ``reward`` are the pattern's best search trial and its single value
    (what made it a candidate); ``runs`` every full-budget result of the pattern, in trial
    id order; ``pending`` its re-check trials that have not ended yet.
    """

    pattern_hash: str
    trial_id: int
    reward: float
    pattern: list[dict[str, Any]]
    runs: tuple[Run, ...]
    pending: int = 0

    @property
    def n(self) -> int:
        """How many full-budget results the mean is over."""
        return len(self.runs)

    @property
    def mean(self) -> float:
        """Mean reward over :attr:`runs` (the single value when there is no run)."""
        return sum(r.reward for r in self.runs) / len(self.runs) if self.runs else self.reward

    @property
    def sd(self) -> float | None:
        """Sample standard deviation of the runs' rewards (None below 2 runs)."""
        if len(self.runs) < 2:
            return None
        m = self.mean
        return math.sqrt(sum((r.reward - m) ** 2 for r in self.runs) / (len(self.runs) - 1))

    @property
    def rechecked(self) -> bool:
        """At least one re-check run has a result."""
        return any(r.purpose == RECHECK for r in self.runs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: what ``export`` writes and ``status --json`` shows per pattern."""
        return {"pattern_hash": self.pattern_hash, "trial_id": self.trial_id,
                "reward": self.reward, "rechecked": self.rechecked, "n": self.n,
                "mean": self.mean, "sd": self.sd, "pending": self.pending,
                "seeds": [r.seed for r in self.runs],
                "values": [r.reward for r in self.runs],
                "trial_ids": [r.trial_id for r in self.runs]}


def candidates(store: StoreContract, search_id: int,
               k: int) -> list[tuple[TrialRecord, ResultRecord]]:
    """The ``k`` best distinct full-budget, successful search patterns: ``(trial, result)``
    of each pattern's best trial, best single value first."""
    return store.top_trials(search_id, k, full_only=True, succeeded_only=True,
                            purposes=SEARCH_PURPOSES, distinct=True)


def recheck_seed(search_seed: int, pattern_hash: str, j: int) -> int:
    """The ``j``-th candidate seed of a pattern's re-check: fixed by the search's seed and
    the pattern, so a replanned stage draws the same seeds."""
    return random.Random(f"{search_seed}-recheck-{pattern_hash}-{j}").randrange(2**31)


def plan(store: StoreContract, search_id: int, cfg: SearchConfig) -> list[NewTrial]:
    """The re-check trials still missing (``NewTrial`` items, purpose ``recheck``): for each
    candidate, ``cfg.recheck_seeds`` re-check trials in all, on seeds the pattern never ran
    with. Empty when the stage is off (:meth:`SearchConfig.rechecks`) or complete."""
    from adsearch.store import NewTrial

    if not cfg.rechecks():
        return []
    tops = candidates(store, search_id, cfg.recheck_top)
    runs = store.pattern_runs(search_id, [t.pattern_hash for t, _ in tops])
    items = []
    for trial, _ in tops:
        mine = [t for t, _ in runs if t.pattern_hash == trial.pattern_hash]
        have = sum(1 for t in mine if t.purpose == RECHECK)
        used = {t.seed for t in mine}
        j = 0
        for _ in range(cfg.recheck_seeds - have):
            while (seed := recheck_seed(cfg.seed, trial.pattern_hash, j)) in used:
                j += 1
            used.add(seed)
            items.append(NewTrial(pattern=list(trial.pattern), pattern_hash=trial.pattern_hash,
                                  tokens=list(trial.tokens),
                                  controller_version=trial.controller_version,
                                  logp=trial.logp, seed=seed, purpose=RECHECK))
    return items


def progress(store: StoreContract, search_id: int) -> tuple[int, int]:
    """``(ended, total)`` re-check trials of the search (every round, if it was resumed with
    a larger budget and re-checked again)."""
    c = store.counts(search_id, purposes=[RECHECK])
    return sum(c.get(s, 0) for s in ENDED), sum(c.values())


def scores(store: StoreContract, search_id: int,
           hashes: Iterable[str]) -> dict[str, PatternScore]:
    """:class:`PatternScore` of each pattern of ``hashes`` with a full-budget result."""
    by_hash: dict[str, list[tuple[TrialRecord, ResultRecord | None]]] = {}
    for t, r in store.pattern_runs(search_id, hashes):
        by_hash.setdefault(t.pattern_hash, []).append((t, r))
    return {h: s for h, rows in by_hash.items() if (s := _score(h, rows)) is not None}


def _score(pattern_hash: str,
           rows: Sequence[tuple[TrialRecord, ResultRecord | None]]) -> PatternScore | None:
    runs = []
    best: tuple[TrialRecord, float] | None = None
    for t, r in rows:
        if t.state != "done" or r is None or r.reward is None or r.cache_of is not None:
            continue  # (a cache hit repeats its source's run: one seed, counted once)
        m = r.metrics or {}
        if m.get("truncated"):
            continue
        runs.append(Run(t.id, t.seed, float(r.reward), t.purpose))
        if t.purpose != RECHECK and not m.get("bad_pattern") and (
                best is None or float(r.reward) > best[1]):
            best = (t, float(r.reward))
    if not runs:
        return None
    if best is None:  # only re-check runs or bad ones left: name the first run
        first = next(t for t, _ in rows if t.id == runs[0].trial_id)
        best = (first, runs[0].reward)
    pending = sum(1 for t, _ in rows if t.purpose == RECHECK and t.state not in ENDED)
    return PatternScore(pattern_hash, best[0].id, best[1], list(best[0].pattern),
                        tuple(runs), pending)


@dataclass(frozen=True)
class Ranking:
    """What ``export --best`` picks from: patterns best first, and what to warn about."""

    patterns: list[PatternScore]
    on_mean: bool  # the first pattern was picked on its re-check mean
    warnings: list[str]


def ranking(store: StoreContract, search_id: int, cfg: SearchConfig, k: int) -> Ranking:
    """The ``k`` patterns ``export --best`` writes, best first: re-checked patterns by their
    mean (ties: the better single value), then the others by single value."""
    rc = store.trials(search_id, purposes=[RECHECK])
    pool = scores(store, search_id, {t.pattern_hash for t in rc})
    checked = sorted((s for s in pool.values() if s.rechecked),
                     key=lambda s: (-s.mean, -s.reward, s.trial_id))
    want = max(k, cfg.recheck_top if cfg.rechecks() else 0)
    tops = candidates(store, search_id, want + len(checked))
    done = {s.pattern_hash for s in checked}
    single = [PatternScore(t.pattern_hash, t.id, float(r.reward), list(t.pattern),
                           (Run(t.id, t.seed, float(r.reward), t.purpose),))
              for t, r in tops
              if t.pattern_hash not in done and r.reward is not None]  # (top_trials: never None)
    warnings = []
    if not checked:
        why = ("the search was started with --no-recheck" if not cfg.rechecks() else
               "its re-check has not finished (`adsearch resume` completes it)" if rc else
               "its re-check has not run (`adsearch resume` completes the search, then the "
               "re-check)")
        if single:
            warnings.append(f"not re-checked: picked on one seed's value, which favours lucky "
                            f"children (the winner's curse); {why}")
    else:
        ended, total = progress(store, search_id)
        left = [t for t, _ in tops[: cfg.recheck_top] if t.pattern_hash not in done]
        if ended < total or left:
            bits = [f"{ended} of {total} re-check trials ended"] if ended < total else []
            bits += [f"trial {t.id}'s pattern is in the top {cfg.recheck_top} but not "
                     "re-checked" for t in left]
            warnings.append("the re-check is incomplete (" + "; ".join(bits) + "); "
                            "`adsearch resume` completes it")
    return Ranking((checked + single)[:k], bool(checked), warnings)
