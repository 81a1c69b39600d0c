#!/usr/bin/env python3
"""Proof round 4, transfer (issue 21 §3): the LM search's exported pattern file, unchanged,
on a translation protocol where tuned Dropout beats none on validation BLEU.

The protocol and its baselines come from ``benchmarks/proof4_regime.py``: its 5-seed scan of
the protocol (``--protocol T4k-... --seeds 5``) holds none and Dropout 0.1/0.2/0.3 at seeds
``0..N-1``; the rate with the best mean paired validation-BLEU gain over none is the *tuned
Dropout* (picked on validation, never on test). This script trains the pattern file at the
same seeds (the task seeds init and data order from the seed, so runs pair up seed by seed)
and compares, paired, with 95% t intervals:

- the pattern against the tuned Dropout: the target is test BLEU **at least** the tuned
  Dropout's (the mean paired difference >= 0; its interval is printed beside it, and a
  5-seed interval that straddles 0 is a tie, said as such);
- the pattern against none;
- validation BLEU beside test BLEU for both.

It refuses a protocol whose scan has not met the transfer-target criterion (the tuned
Dropout's validation gain over none, interval above 0, at least 5 seeds) unless ``--anyway``
is given: on such a protocol "at least tuned Dropout" says nothing about regularization.

Resumable: each finished child is appended to ``--out`` (default
``benchmarks/results/proof4/transfer.json``) at once; a rerun skips seeds it holds and
refuses rows of another pattern file or protocol config. Run it pinned to one core::

    taskset -c 1 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/proof4_transfer.py \\
        --protocol T4k-d256-e16 --seeds 5
    .venv/bin/python benchmarks/proof4_transfer.py --protocol T4k-d256-e16 --render
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proof4_regime as regime  # noqa: E402

OUT = regime.OUT.with_name("transfer.json")
PATTERN = regime.OUT.with_name("lm-tpe.json")
LABEL = "LM export"


def _rel(path: str | Path | None) -> str | None:
    """A path inside the repository as it is written there (results hold no home paths)."""
    if path is None:
        return None
    p = Path(path).resolve()
    return str(p.relative_to(regime.REPO)) if p.is_relative_to(regime.REPO) else str(path)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(out: Path) -> dict[str, Any]:
    return json.loads(out.read_text()) if out.is_file() else {}


def save(doc: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(out)


def append_run(row: dict[str, Any], head: dict[str, Any], out: Path) -> None:
    """Add one finished child to ``out`` under a file lock, re-reading it first: two
    processes (``--seed-list``, one core each) may fill one file."""
    from filelock import FileLock

    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        doc = {**load(out), **head}
        doc["runs"] = [r for r in doc.get("runs", []) if r["seed"] != row["seed"]] + [row]
        doc["runs"].sort(key=lambda r: r["seed"])
        save(doc, out)


def summary(doc: dict[str, Any], rows: list[dict[str, Any]], protocol: str) -> dict[str, Any]:
    """The pattern against the tuned Dropout (picked on validation by the regime scan) and
    against none, paired over the seeds both have, on validation and test BLEU."""
    from adsearch.verify.stats import paired_diff

    scan = regime.seq_summary(rows, protocol)
    pick = scan.get("pick")
    mine = {r["seed"]: r for r in doc.get("runs", []) if r["protocol"] == protocol
            and r.get("val_bleu") is not None}
    base: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rows:
        if r["protocol"] == protocol and r.get("val_bleu") is not None:
            base.setdefault(r["regularizer"], {})[r["seed"]] = r
    out: dict[str, Any] = {"protocol": protocol, "pattern_file": doc.get("pattern_file"),
                           "pattern_sha256": doc.get("pattern_sha256"),
                           "scan_met": bool(scan.get("met")), "scan_val_gap": scan.get("val_gap"),
                           "tuned_dropout": pick, "n": len(mine),
                           LABEL: {k: _mean([r[k] for r in mine.values()])
                                   for k in ("val_bleu", "test_bleu")}}
    for label in ("none", pick):
        if not label or label not in base:
            continue
        other = base[label]
        out[f"vs {label}"] = {k: paired_diff({s: r[k] for s, r in mine.items()},
                                             {s: r[k] for s, r in other.items()}).to_dict()
                              for k in ("val_bleu", "test_bleu")}
        out[label] = {k: _mean([other[s][k] for s in mine if s in other])
                      for k in ("val_bleu", "test_bleu")}
    d = out.get(f"vs {pick}", {}).get("test_bleu")
    out["met"] = bool(d and d["n"] >= 5 and d["mean"] >= 0.0)
    out["target"] = ("test BLEU of the LM export at least the tuned Dropout's: mean paired "
                     "difference >= 0 over >= 5 seeds (interval beside it)")
    return out


def _mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else math.nan


def render(s: dict[str, Any]) -> str:
    def ci(d: dict[str, Any] | None) -> str:
        if not d or d["n"] < 2:
            return "-"
        return f"{d['mean']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}]"

    lines = [f"## transfer: {s['protocol']}, {s['n']} seed(s), tuned Dropout = "
             f"{s['tuned_dropout']} (scan criterion met: {s['scan_met']})", "",
             "| arm | val BLEU | test BLEU | export - arm, val | export - arm, test |",
             "| --- | ---: | ---: | ---: | ---: |"]
    e = s[LABEL]
    lines.append(f"| {LABEL} | {e['val_bleu']:.2f} | {e['test_bleu']:.2f} | | |")
    for label in ("none", s["tuned_dropout"]):
        if label and label in s:
            v = s[f"vs {label}"]
            lines.append(f"| {label} | {s[label]['val_bleu']:.2f} | {s[label]['test_bleu']:.2f}"
                         f" | {ci(v['val_bleu'])} | {ci(v['test_bleu'])} |")
    lines += ["", f"target ({s['target']}): {'met' if s['met'] else 'not met'}"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", required=True,
                    choices=[p for p in regime.PROTOCOLS if p.startswith("T")])
    ap.add_argument("--pattern", type=Path, default=PATTERN,
                    help="the LM search's pattern file, unchanged (default %(default)s)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--seed-list", default=None,
                    help="comma list of seeds this process runs (default 0..seeds-1): two "
                         "processes, one core each, can split the seeds of one file")
    ap.add_argument("--rows", type=Path, default=regime.OUT,
                    help="the regime scan's rows (default %(default)s)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--render", action="store_true", help="print the comparison and exit")
    ap.add_argument("--anyway", action="store_true",
                    help="run on a protocol whose scan has not met the criterion")
    args = ap.parse_args()
    rows = regime.load_rows(args.rows)
    doc = load(args.out)
    if args.render:
        from filelock import FileLock

        with FileLock(str(args.out) + ".lock"):  # a running child may append meanwhile
            doc = load(args.out)
            if doc.get("pattern_file"):
                doc["pattern_file"] = _rel(doc["pattern_file"])
            s = summary(doc, rows, args.protocol)
            doc["summary"] = s
            save(doc, args.out)
        print(render(s))
        return
    from adsearch.patterns import load_patternset

    if not args.pattern.is_file():
        sys.exit(f"error: no pattern file {args.pattern}: pass --pattern (an `adsearch export`)")
    ps = load_patternset(str(args.pattern))  # a bad file fails here, before any training
    sha = _sha(args.pattern)
    scan = regime.seq_summary(rows, args.protocol)
    if not scan.get("met") and not args.anyway:
        sys.exit(f"error: the scan of {args.protocol} in {args.rows} has not met the transfer-"
                 f"target criterion (tuned Dropout above none on validation BLEU, 5 seeds): "
                 f"run proof4_regime.py --protocol {args.protocol} --seeds 5 first, or pass "
                 "--anyway")
    config = regime.PROTOCOLS[args.protocol]
    if doc and (doc.get("pattern_sha256") != sha or doc.get("config", config) != config
                or doc.get("protocol", args.protocol) != args.protocol):
        sys.exit(f"error: {args.out} holds runs of another pattern file or protocol: pass "
                 "--out NEW.json")
    head = {"protocol": args.protocol, "config": config, "pattern_file": _rel(args.pattern),
            "pattern_sha256": sha, "pattern": ps.to_dict()}
    seeds = ([int(x) for x in args.seed_list.split(",")] if args.seed_list
             else list(range(args.seeds)))
    import torch

    from adsearch.tasks import get_task

    torch.set_num_threads(1)
    task = get_task("translation")
    cfg = task.config_from_dict(config)
    for seed in seeds:
        if any(r["seed"] == seed for r in load(args.out).get("runs", [])):
            continue
        cpu = time.process_time()
        res = task.run_child(cfg, load_patternset(str(args.pattern)), None, "cpu", seed)
        m = res.metrics
        append_run({"protocol": args.protocol, "regularizer": LABEL, "seed": seed,
                     "seconds": res.seconds, "cpu_seconds": time.process_time() - cpu,
                     **{k: m.get(k) for k in regime.FAMILIES["bleu"].keys},
                     "curve": [{k: round(v, 5) for k, v in p.items()} for p in res.curve],
                     "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "command": " ".join(["benchmarks/proof4_transfer.py", *sys.argv[1:]])},
                   head, args.out)
        got = (f"val {m['val_bleu']:.2f} test {m['test_bleu']:.2f} best epoch "
               f"{m['best_epoch']:.0f}" if m.get("test_bleu") is not None else "diverged")
        print(f"{args.protocol} | {LABEL} | seed {seed}: {got} ({res.seconds:.0f} s)", flush=True)
    from filelock import FileLock

    with FileLock(str(args.out) + ".lock"):
        doc = load(args.out)
        s = summary(doc, regime.load_rows(args.rows), args.protocol)
        doc["summary"] = s
        save(doc, args.out)
    print(render(s))


if __name__ == "__main__":
    main()
