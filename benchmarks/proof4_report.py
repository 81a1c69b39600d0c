#!/usr/bin/env python
"""Proof round 4 report (issue 21 §4): the figures and ``summary.json`` from whatever exists.

Usage: .venv/bin/python benchmarks/proof4_report.py [--runs runs/proof4]
           [--out benchmarks/results/proof4] [--verify REPORT.json ...]

Reads the searches under ``--runs`` (every run directory there; verify searches are left
out) read-only, as ``adsearch status`` does (the store opened read-only; nothing is written
there), and writes into ``--out``:

1. ``searches.png``: each search's best-so-far validation reward against the minutes of
   daemon run time since it started (full-length results only, as ``status``; re-check
   runs left out), one panel; the seeded baselines' trials (purpose ``enqueued``) starred;
2. ``learned_reward.png``: per controller update, the learned rewards of its batch
   (``results.learned_reward``, as ``status --json`` lists them) and their mean, one panel
   per search whose controller learns (:mod:`adsearch.views.learned_plot`);
3. ``patterns.png``: each search's best pattern as ``export`` writes it (the file
   ``OUT/WHICH.json`` that benchmarks/proof4_search.sh exported, else the same ranking read
   from the store), 4 channels of each site drawn at the site's recorded map
   (:mod:`adsearch.views.mask_draw`), one row per search;
4. ``calibrate_regime.json``: Spearman of validation at each epoch against the final epoch,
   from the regime scan's curves, per seed across regularizers, then the median over seeds
   (:func:`adsearch.calibrate.analysis.agreement_table`, what ``adsearch calibrate`` uses);
   ``calibrate.json``'s own line is printed when it exists;
5. ``summary.json``: one object per claim of issue 21's table (``claim``, ``target``,
   ``measured``, ``ci``, ``met``, and a ``note``). A claim this script cannot measure keeps
   what the file already says when someone filled it in (the LM and transfer claims);
6. on stdout, a markdown table of the searches.

The LM searches (``p4-lm-*``, proof4_search.sh ``lm-*``) get their own figures beside the
CIFAR ones (``searches_lm.png``, ``learned_reward_lm.png``, ``patterns_lm.png``: sequences of
``bptt`` steps by ``d_model`` channels), their own table, and ``calibrate_lm.json``'s line.
A verify report whose metric is lower-is-better (``--lm-task``, default wikitext2) answers
the LM claims: every LM difference is the paired relative one, ``a / b - 1`` in % of test
perplexity (the issue's LM target is relative), with its 95% t interval.

Every piece is drawn from what exists; a missing piece is skipped with one line saying so.
Running it again rewrites every output (idempotent). Needs matplotlib (``adsearch[plot]``).
Selection is on validation only; test values come from verify reports and are reported, not
selected on.

Its parts, beside it: ``proof4_searches.py`` (each search read from its store, and the
table), ``proof4_plots.py`` (the figures), ``proof4_calibration.py`` (item 4) and
``proof4_claims.py`` (item 5); this file is the command.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its parts, beside it
from proof4_calibration import calibrate_line, regime_cross_check  # noqa: E402
from proof4_claims import build_summary, load_reports  # noqa: E402
from proof4_plots import plot_learned, plot_patterns, plot_searches  # noqa: E402
from proof4_searches import (  # noqa: E402
    LM_SUFFIX,
    ORDER,
    find_searches,
    is_lm,
    markdown_table,
    say,
)

ROOT = Path(__file__).resolve().parent.parent


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "proof4",
                    help="directory of the searches' run directories (read-only)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "proof4",
                    help="where the figures and JSON go (and calibrate.json, regime*.json "
                         "are read)")
    ap.add_argument("--verify", type=Path, action="append", default=[],
                    help="a verify report JSON (adsearch verify -o FILE); repeatable")
    ap.add_argument("--task", default="cifar10",
                    help="the task whose verify reports answer the CIFAR claims")
    ap.add_argument("--lm-task", default="wikitext2",
                    help="the task whose verify reports (lower is better) answer the LM claims")
    args = ap.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("error: proof4_report.py draws with matplotlib, which is not installed: "
              "pip install 'adsearch[plot]' (or .venv/bin/pip install matplotlib)",
              file=sys.stderr)
        return 1
    from adsearch.atomic import write_text_atomic
    from adsearch.errors import AdsearchError

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    try:
        searches = find_searches(args.runs, out)
        groups = [("", [s for s in searches if not is_lm(s)]),
                  (LM_SUFFIX, [s for s in searches if is_lm(s)])]
        wrote = []
        for suffix, group in groups:
            for name, fn in (("searches", plot_searches), ("learned_reward", plot_learned),
                             ("patterns", plot_patterns)):
                if group and fn(group, out / f"{name}{suffix}.png"):
                    wrote.append(f"{name}{suffix}.png")
        cal = out / "calibrate.png"
        say(f"calibrate.png: {'exists' if cal.is_file() else 'missing (adsearch calibrate)'}")
        calibrate_line(out / "calibrate.json")
        if any(is_lm(s) for s in searches) or (out / "calibrate_lm.json").is_file():
            calibrate_line(out / "calibrate_lm.json")
        if regime_cross_check(out / "regime.json", out / "regime_summary.json", out):
            wrote.append("calibrate_regime.json")
        old_path = out / "summary.json"
        old = json.loads(old_path.read_text(encoding="utf-8")) if old_path.is_file() else []
        n_expected = max(len(ORDER), len(groups[0][1]))
        summary = build_summary(out / "regime_summary.json", load_reports(args.verify),
                                args.task, n_expected, old if isinstance(old, list) else [],
                                args.lm_task, max(len(ORDER), len(groups[1][1])))
    except AdsearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_text_atomic(old_path, json.dumps(summary, indent=1) + "\n")
    wrote.append("summary.json")
    say("")
    say("claims (summary.json):")
    for c in summary:
        ci = "-" if not c.get("ci") else f"[{c['ci'][0]:+.3g}, {c['ci'][1]:+.3g}]"
        m = c.get("measured")
        shown = "-" if m is None else (f"{m:+.4g}" if isinstance(m, (int, float)) else str(m))
        say(f"- {c['claim']}: target {c['target']}; measured {shown} {ci}; met {c.get('met')}"
            + (f" ({c['note']})" if c.get("note") else ""))
    for _, group in groups:
        if group:
            say("")
            say(markdown_table(group))
    say("")
    say(f"wrote {', '.join(wrote)} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
