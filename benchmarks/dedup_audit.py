"""How many children of a search trained what another child had trained already (issue 19 §4).

Reads a search's store (read-only; stores from before the canonical patterns too: each
stored pattern is canonicalised here, so an old search's all-off copies of none count as one
pattern) and prints, as JSON:

- ``children``: trials that ran a child (``attempts >= 1``), cache hits and refused patterns
  excluded, per purpose;
- ``trained_twice``: children whose (canonical pattern, seed) an earlier child of the search
  had trained (what the cache prevents; with ``--child-seed`` those are exact repeats);
- ``repeated_patterns``: children whose canonical pattern an earlier child had trained on any
  seed (with a seed per trial a repeat is a new measurement, not waste);
- ``none_children``: children that trained *none* (every site off);
- ``cache_hits``, ``refused``: draws that ran no child (adsearch.daemon.dedup);
- ``distinct_full``: distinct canonical patterns with a successful full-budget result.

Usage::

    python benchmarks/dedup_audit.py --store sqlite:///runs/NAME/adsearch.db NAME
"""

from __future__ import annotations

import argparse
import hashlib
import json
from typing import Any

from adsearch.patterns import SearchSpace
from adsearch.patterns.canonical import canonical_dicts
from adsearch.store import Store


def canonical_hash(space: SearchSpace, pattern: list[Any]) -> str:
    """The daemon's ``pattern_hash`` of the canonical form of a stored pattern."""
    pats = canonical_dicts(space, pattern)
    return hashlib.sha256(json.dumps(pats, sort_keys=True).encode()).hexdigest()[:32]


def audit(store: Store, name: str) -> dict[str, Any]:
    """The figures of the module docstring for search ``name``."""
    search = store.get_search(name)
    space_name = search.config.get("space") or ""
    space = SearchSpace.from_name(space_name)
    results = {r.trial_id: r for r in store.results(search.id)}
    seen_keys: set[tuple[str, int]] = set()
    seen_patterns: set[str] = set()
    out: dict[str, Any] = {"search": name, "space": space_name, "children": {},
                           "trained_twice": 0, "repeated_patterns": 0, "none_children": 0,
                           "cache_hits": 0, "refused": 0}
    full: set[str] = set()
    for t in store.trials(search.id):
        r = results.get(t.id)
        if r is not None and r.cache_of is not None:
            out["cache_hits"] += 1
            continue
        if r is not None and (r.metrics or {}).get("refused"):
            out["refused"] += 1
            continue
        if t.attempts < 1:
            continue
        h = canonical_hash(space, list(t.pattern))
        purpose = getattr(t, "purpose", "search")
        out["children"][purpose] = out["children"].get(purpose, 0) + 1
        out["trained_twice"] += (h, t.seed) in seen_keys
        out["repeated_patterns"] += h in seen_patterns
        out["none_children"] += all(p.get("off") for p in t.pattern if isinstance(p, dict))
        seen_keys.add((h, t.seed))
        seen_patterns.add(h)
        m = (r.metrics or {}) if r is not None else {}
        if r is not None and r.reward is not None and not m.get("truncated") \
                and not m.get("bad_pattern"):
            full.add(h)
    out["distinct_full"] = len(full)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="search name")
    ap.add_argument("--store", required=True, help="store URL, e.g. sqlite:///runs/NAME/adsearch.db")
    args = ap.parse_args()
    with Store(args.store, readonly=True) as store:
        print(json.dumps(audit(store, args.name), indent=2))


if __name__ == "__main__":
    main()
