"""How many distinct patterns a search trained at the full budget (issue 19, Done means).

Reads a search's SQLite store directly (read-only, ``mode=ro``), so it works on stores of any
schema revision, before and after the cache (migration 0005). A pattern is counted in its
canonical form: an ``off`` site is just "off" (its other fields are inert) and a pattern whose
sites are all off is "none". Prints, per search:

- trials done, and how many were trained (a child ran) or reused a stored result (cache hit);
- full-budget results (not stopped at a rung) and their distinct canonical patterns;
- children trained twice: a (canonical pattern, seed, fidelity) trained by more than one child.

Usage: python benchmarks/distinct_patterns.py STORE.db [STORE.db ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections import Counter
from typing import Any


def canonical(pattern: list[dict[str, Any]]) -> str:
    """The canonical key of a pattern list: off sites collapse, all-off is none."""
    sites = ["off" if p.get("off") or p.get("rate") == 0 else json.dumps(p, sort_keys=True)
             for p in pattern]
    return "none" if all(s == "off" for s in sites) else json.dumps(sites)


def count(path: str) -> dict[str, Any]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    cols = {r[1] for r in con.execute("PRAGMA table_info(results)")}
    tcols = {r[1] for r in con.execute("PRAGMA table_info(trials)")}
    cache = "r.cache_of" if "cache_of" in cols else "NULL"
    purpose = "t.purpose" if "purpose" in tcols else "'search'"
    rows = con.execute(
        f"SELECT t.id, t.pattern, t.seed, r.metrics, {cache}, {purpose} FROM trials t "
        "JOIN results r ON r.trial_id = t.id WHERE t.state = 'done' ORDER BY r.id").fetchall()
    done = trained = hits = full = 0
    keys_full: set[str] = set()
    trained_keys: Counter[tuple[str, int, str]] = Counter()
    for _tid, pattern, seed, metrics, cache_of, purp in rows:
        if purp != "search":
            continue
        done += 1
        m = json.loads(metrics) if isinstance(metrics, str) else (metrics or {})
        key = canonical(json.loads(pattern) if isinstance(pattern, str) else pattern)
        truncated = bool(m.get("truncated"))
        fidelity = f"rung {m.get('truncated_at_rung')}" if truncated else "full"
        if cache_of is not None:
            hits += 1
        elif not m.get("refused"):  # a pattern refused by the cap ran no child
            trained += 1
            trained_keys[(key, int(seed), fidelity)] += 1
        if not truncated and not m.get("bad_pattern"):
            full += 1
            keys_full.add(key)
    twice = sum(n - 1 for n in trained_keys.values() if n > 1)
    return {"store": path, "done": done, "trained": trained, "cache_hits": hits,
            "full_budget": full, "distinct_full_budget": len(keys_full),
            "none_among_full": int("none" in keys_full), "trained_twice": twice}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stores", nargs="+")
    ap.add_argument("--json", dest="out")
    args = ap.parse_args(argv)
    rows = [count(p) for p in args.stores]
    keys = ["done", "trained", "cache_hits", "full_budget", "distinct_full_budget",
            "trained_twice"]
    print("| store | " + " | ".join(keys) + " |")
    print("| --- |" + " ---: |" * len(keys))
    for r in rows:
        print(f"| {r['store']} | " + " | ".join(str(r[k]) for k in keys) + " |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
