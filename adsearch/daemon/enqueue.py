"""A seeded search (issue 20 §2): ``start --enqueue FILE`` and ``start --seed-baselines``.

Like Optuna's ``enqueue_trial``, the given patterns run first:

- ``--enqueue FILE`` (repeatable): a pattern file (``adsearch export``, ``adsearch pattern
  baseline``, or the user's own). Its space must be of the search's family and kind
  (a v1 file in a v2 search, or the reverse, is refused with the fix); the CLI reads each
  file at ``start`` and stores its patterns in the search config (``enqueue``), so a resume
  needs no file.
- ``--seed-baselines``: the tuned-baseline grid of the space's family (:func:`baseline_grid`;
  v2 spaces only, where the baselines are points): conv Dropout 0.1/0.2/0.3,
  SpatialDropout 0.1/0.2, DropBlock 0.1/0.2 with 3 px blocks (at the task's site maps, when
  they are known and a 3 px block fits every site); seq Dropout 0.1/0.2/0.3 and variational
  0.1/0.3.

**Order and bookkeeping.** The daemon draws the enqueued patterns before any sample of the
controller, in order (files first, then the grid), as trials with ``purpose = 'enqueued'``
that count against ``--budget-trials``. Which come next is the list minus the enqueued
trials already stored, so a killed daemon resumes without repeating or skipping one. The
list is rebuilt the same way at every start (the grid depends only on the space and the
task's site maps). ``status`` marks them.

**Does the controller learn from them?** Yes: their results reach ``controller.update`` like
every search trial's (the search's best can then never be worse than the best baseline it
ran). Each is stored with its tokens (the space encodes it) and, as its behaviour logp, the
log-probability of those tokens under the policy at the time it was drawn, stamped with that
policy's version. TPE models observed rewards and needs nothing more. For the Transformer
(REINFORCE) the sample is off-policy: it is weighted as if the policy of that version had
drawn it, and the staleness correction clips its ratio like any stale sample's, which
bounds the step it can cause. The random controller learns from nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from adsearch.errors import ConfigError, PatternError
from adsearch.patterns import SITE_MAP_SIDES, SearchSpace, load_patternset

if TYPE_CHECKING:
    from adsearch.controller import Controller
    from adsearch.daemon.config import SearchConfig
    from adsearch.store import NewTrial
    from adsearch.store.contract import StoreContract

ENQUEUED = "enqueued"
"""``trials.purpose`` of an enqueued trial."""

#: The tuned-baseline grid of ``--seed-baselines`` per space kind: (kind, rate, block px).
GRID: dict[str, tuple[tuple[str, float, int | None], ...]] = {
    "conv": (("dropout", 0.1, None), ("dropout", 0.2, None), ("dropout", 0.3, None),
             ("spatial", 0.1, None), ("spatial", 0.2, None),
             ("dropblock", 0.1, 3), ("dropblock", 0.2, 3)),
    "seq": (("dropout", 0.1, None), ("dropout", 0.2, None), ("dropout", 0.3, None),
            ("variational", 0.1, None), ("variational", 0.3, None)),
}


def read_enqueue_files(paths: Sequence[str], space_name: str) -> list[dict[str, Any]]:
    """The ``enqueue`` config entries of ``--enqueue`` files: ``{"file", "space",
    "patterns"}`` each, checked against the search space ``space_name`` (PatternError names
    the file and the fix)."""
    space = SearchSpace.from_name(space_name)
    out: list[dict[str, Any]] = []
    for path in paths:
        ps = load_patternset(path)
        if not ps.space.same_sites(space) or not ps.space.same_family(space):
            raise PatternError(
                f"--enqueue {path}: written for space {ps.space.name}, but this search draws "
                f"from space {space.name}; enqueue a file of that space (`adsearch pattern "
                f"baseline ... --space {space.name}` writes one), or start the search with "
                f"--space {ps.space.name}"
            )
        out.append({"file": str(path), "space": ps.space.name,
                    "patterns": [p.to_dict() for p in ps.patterns]})
    return out


def conv_sides(space: SearchSpace, site_maps: Sequence[Any] | None) -> tuple[int, ...] | None:
    """Each conv site's map side in px: the smallest side of the first map the task states
    for it, else the built-in network's (:data:`SITE_MAP_SIDES`), else None."""
    if site_maps and len(site_maps) == space.num_sites and all(site_maps):
        return tuple(min(int(v) for v in site[0][-2:]) for site in site_maps)
    return SITE_MAP_SIDES.get(f"conv-{space.num_sites}")


def baseline_grid(space: SearchSpace, site_maps: Sequence[Any] | None = None) -> list[list[Any]]:
    """The ``--seed-baselines`` patterns (one list per site each) of a v2 space."""
    from adsearch.patterns.baselines2 import baseline_patterns

    if space.version != 2:
        raise ConfigError(
            f"--seed-baselines: the baselines are points of the v2 spaces only, and this search "
            f"draws from {space.name}; start it with --space {space.kind}2-{space.num_sites}"
        )
    sides = conv_sides(space, site_maps) if space.kind == "conv" else None
    out = []
    for kind, rate, block in GRID[space.kind]:
        try:
            out.append(baseline_patterns(kind, rate, space, block, sides))
        except PatternError:
            if kind != "dropblock":  # a 3 px block that fits no site: the grid skips it
                raise
    return out


def enqueued_patterns(cfg: SearchConfig, space: SearchSpace,
                      site_maps: Sequence[Any] | None) -> list[list[Any]]:
    """Every pattern list this search enqueues, in order: the files', then the grid."""
    out = [[space.pattern_from_dict(p) for p in e["patterns"]] for e in (cfg.enqueue or [])]
    if cfg.seed_baselines:
        out.extend(baseline_grid(space, site_maps))
    return out


def next_enqueued(store: StoreContract, search_id: int, cfg: SearchConfig, space: SearchSpace,
                  controller: Controller, site_maps: Sequence[Any] | None, n: int,
                  first_seed: Callable[[int], int]) -> list[NewTrial]:
    """Up to ``n`` ``NewTrial`` items of the enqueued patterns not stored yet.

    ``first_seed(k)`` gives the child seed of the k-th item of this draw (the daemon's rule).
    """
    from adsearch.controller import Sample
    from adsearch.patterns.canonical import canonical_patterns, pattern_hash
    from adsearch.store import NewTrial

    if not (cfg.enqueue or cfg.seed_baselines) or n <= 0:
        return []
    done = sum(store.counts(search_id, purposes=[ENQUEUED]).values())
    todo = enqueued_patterns(cfg, space, site_maps)[done:done + n]
    items = []
    for k, pats in enumerate(todo):
        tokens = tuple(space.encode(pats))
        probe = Sample(tokens, tuple(pats), 0.0, controller.version)
        logp = min(0.0, float(controller.log_prob([probe])[0]))
        dicts = [p.to_dict() for p in canonical_patterns(pats)]
        items.append(NewTrial(pattern=dicts, pattern_hash=pattern_hash(dicts), tokens=list(tokens),
                              controller_version=controller.version, logp=logp,
                              seed=first_seed(k), purpose=ENQUEUED))
    return items
