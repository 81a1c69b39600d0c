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
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The searches of proof4_search.sh, in the order the tables list them (others follow).
ORDER = ("tpe", "reinforce", "random", "v1")
PREFIX = "p4-cifar-"
#: The LM searches (proof4_search.sh lm-*): ``p4-lm-tpe`` etc., exported as ``lm-tpe.json``;
#: their figures carry this suffix (``searches_lm.png``), their claims are the LM ones.
LM_PREFIX = "p4-lm-"
LM_SUFFIX = "_lm"
LM_TARGET = -2.0  # % test perplexity: best searched vs best tuned baseline (issue 21 §3)
#: The regime protocol the searches ran in (proof4_search.sh): the regime cross-check's rows.
SEARCHED_PROTOCOL = "C32"
#: Accuracy metrics are reported in points (x100), as the issue's targets are.
POINTS = 100.0
CIFAR_TARGET = 0.5  # points: best searched vs best tuned baseline (issue 21 §3)
REGIME_TARGET = 1.5  # points: best tuned regularizer vs early-stopped none (issue 21 §1)

CLAIM_REGIME = "regime ({protocol}): best tuned regularizer vs none at its own best length"
CLAIM_LM_REGIME = "regime (LM): best tuned regularizer vs none at its own best length"
CLAIM_CIFAR = "CIFAR: best searched vs best tuned baseline"
CLAIM_LM = "LM: best searched vs best tuned baseline"
CLAIM_WINS = "which search wins at equal budget"
CLAIM_WINS_LM = "which search wins at equal budget (LM)"
CLAIM_TRANSFER = "transfer"
TARGETS = {
    CLAIM_LM_REGIME: "at least 5% of test perplexity, 95% CI excluding 0, >= 5 paired seeds",
    CLAIM_CIFAR: "+0.5 points",
    CLAIM_LM: "at least 2% lower test perplexity, CI reported",
    CLAIM_WINS: "a table, with CIs, of the four searches",
    CLAIM_WINS_LM: "a table, with CIs, of the four searches",
    CLAIM_TRANSFER: ("the LM's exported pattern, unchanged, on a translation protocol where "
                     "tuned Dropout beats none on validation BLEU; BLEU at least that of "
                     "tuned Dropout"),
}
#: Channels of one example drawn per site in patterns.png (a 2x2 mosaic).
CHANNELS = 4
#: Fields a pattern's words always name (v2: rate and kind; v1: size, stride and repeat).
ALWAYS_SHOWN = ("rate", "kind", "size", "stride", "repeat")
LEAD_NOTE = "not measured by benchmarks/proof4_report.py: the lead fills it"


def say(line: str) -> None:
    print(line, flush=True)


# ---------------------------------------------------------------------------- searches
@dataclass
class Point:
    """One finished child of a search: minutes of daemon run time when its result was
    stored, its validation reward, its trial's purpose and whether it is a full-length
    result (not stopped at a rung, not a bad pattern)."""

    minutes: float
    reward: float
    purpose: str
    full: bool


@dataclass
class SearchData:
    """What the report needs of one search, read once from its store (read-only)."""

    name: str
    controller: str
    space: str
    state: str
    elapsed_s: float | None
    points: list[Point]
    updates: list[dict[str, Any]]
    children: int  # child runs of the search (search + enqueued), no cache hit or refusal
    recheck_children: int  # child runs of its re-check stage
    distinct: int  # distinct patterns among those children
    best: dict[str, Any] | None  # trial_id, reward, mean, n, rechecked
    patterns: list[Any] = field(default_factory=list)  # the best pattern set, decoded
    maps: list[list[tuple[int, int]]] = field(default_factory=list)  # per site, largest first
    pattern_source: str = ""
    seq_shape: tuple[int, int] | None = None  # a seq space's (time steps, channels) drawn


def _ts(dt: datetime) -> float:
    return dt.replace(tzinfo=dt.tzinfo or timezone.utc).timestamp()


def run_clock(starts: Sequence[float], stamps: Sequence[float]) -> Callable[[float], float]:
    """Wall time -> seconds of daemon run time: a session begins at each ``daemon.start``
    and (for all but the last) ends at the last event before the next start, so the hours a
    stopped search waited for ``resume`` do not count."""
    sessions: list[tuple[float, float]] = []
    for i, s in enumerate(starts):
        if i + 1 < len(starts):
            nxt = starts[i + 1]
            sessions.append((s, max([x for x in stamps if s <= x < nxt], default=s)))
        else:
            sessions.append((s, math.inf))

    def at(t: float) -> float:
        total = 0.0
        for s, e in sessions:
            if t < s:
                break
            total += min(t, e) - s
        return total

    return at


def which(name: str) -> str:
    """``p4-cifar-tpe`` -> ``tpe``, ``p4-lm-tpe`` -> ``lm-tpe`` (the names
    proof4_search.sh exports under)."""
    if name.startswith(PREFIX):
        return name[len(PREFIX):]
    return name[len("p4-"):] if name.startswith(LM_PREFIX) else name


def is_lm(s: SearchData) -> bool:
    """An LM search of proof4_search.sh (its own figures and claims)."""
    return s.name.startswith(LM_PREFIX)


def _words(i: int, pattern: Any, maps: Sequence[tuple[int, int]]) -> str:
    """One site in ``adsearch show``'s wording (``site 0 (32x32 map): rate=0.2, ...``):
    of its canonical form (adsearch.patterns.canonical), the fields of
    :data:`ALWAYS_SHOWN` and every other field away from its default; a block or tile side
    also in px at each of the site's maps."""
    names = " and ".join(f"{h}x{w}" for h, w in maps)
    where = f" ({names} map{'s' if len(maps) > 1 else ''})" if maps else ""
    if getattr(pattern, "off", False):
        return f"site {i}{where}: off"
    from adsearch.patterns.canonical import canonical_pattern
    from adsearch.patterns.seq import SEQ_SITES
    from adsearch.patterns.seq2 import SeqPattern2

    if isinstance(pattern, SeqPattern2):  # the sub-layers it acts at: "emb=element 0.3"
        d = pattern.to_dict()
        on = [f"{sub}={d[f'{sub}_kind']} {d[f'{sub}_rate']:g}" for sub in SEQ_SITES
              if d[f"{sub}_rate"] > 0]
        if any(d[f"{sub}_kind"] in ("group", "interleave") for sub in SEQ_SITES
               if d[f"{sub}_rate"] > 0):
            on.append(f"groups={d['groups']}")
        return f"site {i}{where}: {', '.join(on) or 'off'}"
    canon = canonical_pattern(pattern)
    default = {f.name: f.default for f in dataclasses.fields(canon)}
    sized = getattr(canon, "kind", None) in ("block", "tile")
    parts = []
    for k, v in canon.to_dict().items():
        if k == "side" and sized:
            from adsearch.patterns.conv2 import resolve

            px = ", ".join(f"{resolve(canon, h, w).side} px at {h}" for h, w in maps)
            parts.append(f"side={v}" + (f" ({px})" if px else ""))
        elif k in ALWAYS_SHOWN or v != default.get(k):
            parts.append(f"{k}={v}")
    return f"site {i}{where}: {', '.join(parts)}"


def pattern_words(s: SearchData) -> str:
    return "; ".join(_words(i, p, s.maps[i] if i < len(s.maps) else [])
                     for i, p in enumerate(s.patterns))


def every_map(store: Any, search_id: int, sides: Any, n_sites: int
              ) -> list[list[tuple[int, int]]]:
    """Per site, every map its dropout modules act on, largest first, as the task recorded
    them when the search started (a WRN site acts before and after its group's stride:
    32 and 16 px), when their largest are the maps ``sides`` (a
    :class:`~adsearch.patterns.mapsides.SiteSides`, what ``show`` uses) has; else the one
    map ``sides`` has for each site."""
    from adsearch.patterns.mapsides import TASK_MAPS_EVENT

    def pair(v: Any) -> tuple[int, int] | None:
        ok = isinstance(v, (list, tuple)) and len(v) == 2
        return (int(v[0]), int(v[1])) if ok and all(isinstance(x, int) for x in v) else None

    for ev in reversed(store.events(search_id, limit=20, kinds=[TASK_MAPS_EVENT])):
        raw = (ev.data or {}).get("maps")
        if isinstance(raw, list) and len(raw) == n_sites:
            out = []
            for entry in raw:
                one = pair(entry)
                many = [pair(e) for e in entry] if one is None and isinstance(entry, list) else []
                got = [one] if one is not None else [m for m in many if m is not None]
                out.append(sorted(got, reverse=True))
            if all(out) and [o[0] for o in out] == list(sides.maps):  # the same record
                return out
    return [[m] if (m := sides.at(i)) is not None else [] for i in range(n_sites)]


def load_search(run_dir: Path, out: Path) -> SearchData | None:
    """Read one search from its run directory, read-only. None for a verify search."""
    from adsearch.daemon.config import SearchConfig
    from adsearch.daemon.launch import open_search
    from adsearch.daemon.recheck import RECHECK, SEARCH_PURPOSES, ranking
    from adsearch.patterns import SearchSpace, decode_patterns, load_patternset
    from adsearch.patterns.mapsides import search_sides
    from adsearch.views.status import build_status

    run, store, search = open_search(None, str(run_dir))
    try:
        cfg = SearchConfig.from_dict(search.config)
        if cfg.controller == "fixed":  # a verify search: planned, not searched
            return None
        snap = build_status(run, store, search, top_k=1)
        trials = {t.id: t for t in store.trials(search.id)}
        results = store.results(search.id)
        events = store.events(search.id, limit=10**6)
        starts = sorted(_ts(e.at) for e in events if e.kind == "daemon.start")
        clock = run_clock(starts or [_ts(search.created_at)], [_ts(e.at) for e in events])
        points, children, rechecks, hashes = [], 0, 0, set()
        for r in results:
            t = trials.get(r.trial_id)
            if t is None:
                continue
            ran = r.cache_of is None and r.seconds > 0  # a child trained (no hit, no refusal)
            if t.purpose == RECHECK:
                rechecks += ran
                continue
            if t.purpose not in SEARCH_PURPOSES:
                continue
            children += ran
            if ran:
                hashes.add(t.pattern_hash)
            if r.reward is None:
                continue
            m = r.metrics or {}
            points.append(Point(clock(_ts(r.created_at)) / 60.0, float(r.reward), t.purpose,
                                not m.get("truncated") and not m.get("bad_pattern")))
        space = SearchSpace.from_name(cfg.space or "")
        top = ranking(store, search.id, cfg, 1).patterns
        best = None
        data = SearchData(search.name, cfg.controller, space.name, snap["state"],
                          snap.get("elapsed_s"), sorted(points, key=lambda p: p.minutes),
                          list(snap.get("updates") or []), children, rechecks, len(hashes),
                          None)
        if space.kind == "seq":
            data.seq_shape = seq_shape(cfg)
        if top:
            sc = top[0]
            best = {"trial_id": sc.trial_id, "reward": sc.reward, "mean": sc.mean, "n": sc.n,
                    "rechecked": sc.rechecked}
            data.best = best
            own = store.results(search.id, [sc.trial_id])
            sides = search_sides(store, search.id, space, own[0] if own else None)
            data.patterns = list(decode_patterns(sc.pattern, space))
            data.maps = every_map(store, search.id, sides, len(data.patterns))
            data.pattern_source = f"trial {sc.trial_id}, the store's ranking (what export writes)"
    finally:
        store.close()
    exported = out / f"{which(search.name)}.json"
    if exported.is_file():  # the file proof4_search.sh exported when the search finished
        ps = load_patternset(exported)
        if ps.provenance.search == search.name:  # the maps: the store's, read above
            data.patterns = list(ps.patterns)
            data.pattern_source = f"{exported} (trial {ps.provenance.trial_id})"
    return data


def seq_shape(cfg: Any) -> tuple[int, int]:
    """A seq search's child states, ``(time steps, channels)``: the task config's
    ``bptt`` and ``d_model`` (the task's defaults filled in), else (64, 64)."""
    from adsearch.errors import AdsearchError
    from adsearch.tasks.registry import get_task

    try:
        task = get_task(cfg.task)
        c = task.config_from_dict(dict(cfg.task_config or {}))
    except (AdsearchError, KeyError, TypeError, ValueError):
        return (64, 64)
    return (int(getattr(c, "bptt", 64)), int(getattr(c, "d_model", 64)))


def find_searches(runs: Path, out: Path) -> list[SearchData]:
    """Every search run directory under ``runs`` (a directory with ``search.json``), in the
    order of :data:`ORDER`, then by name."""
    if not runs.is_dir():
        say(f"missing: {runs} (no searches): the search figures and table are skipped")
        return []
    dirs = [d for d in sorted(runs.iterdir()) if (d / "search.json").is_file()]
    got = []
    for d in dirs:
        s = load_search(d, out)
        if s is not None:
            got.append(s)
    rank = {w: i for i, w in enumerate(ORDER)}
    got.sort(key=lambda s: (is_lm(s), rank.get(which(s.name).removeprefix("lm-"), len(ORDER)),
                           s.name))
    for w in ORDER:
        if not any(which(s.name) == w for s in got):
            say(f"missing: search {PREFIX}{w} under {runs} (not started yet?)")
    if any(is_lm(s) for s in got):
        for w in ORDER:
            if not any(s.name == LM_PREFIX + w for s in got):
                say(f"missing: search {LM_PREFIX}{w} under {runs} (not started yet?)")
    else:
        say(f"missing: no LM search ({LM_PREFIX}*) under {runs}: the LM figures are skipped")
    return got


# ---------------------------------------------------------------------------- figures
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    import io

    from adsearch.atomic import write_bytes_atomic

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _pyplot().close(fig)
    write_bytes_atomic(path, buf.getvalue())


def plot_searches(searches: Sequence[SearchData], path: Path) -> bool:
    """``searches.png``: best-so-far over run time, every search on the same axes."""
    drawn = [s for s in searches if any(p.full for p in s.points)]
    if not drawn:
        say("missing: no search has a full-length result yet: searches.png skipped")
        return False
    plt = _pyplot()
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    for i, s in enumerate(drawn):
        color = f"C{i}"
        full = [p for p in s.points if p.full]
        xs, ys, top = [0.0], [math.nan], -math.inf
        for p in full:
            top = max(top, p.reward)
            xs.append(p.minutes)
            ys.append(top)
        end = max(xs[-1], (s.elapsed_s or 0.0) / 60.0)
        xs.append(end)
        ys.append(top)
        ax.step(xs, ys, where="post", color=color, lw=2,
                label=f"{s.name} ({s.controller}, {s.space}): {len(full)} full-length, "
                      f"best {top:.4f}")
        plain = [p for p in full if p.purpose != "enqueued"]
        seeded = [p for p in full if p.purpose == "enqueued"]
        ax.scatter([p.minutes for p in plain], [p.reward for p in plain], s=12, color=color,
                   alpha=0.45)
        ax.scatter([p.minutes for p in seeded], [p.reward for p in seeded], s=110, marker="*",
                   color=color, edgecolor="black", linewidth=0.7, zorder=5)
    handles, _ = ax.get_legend_handles_labels()
    handles += [Line2D([], [], ls="", marker="*", ms=11, color="#bbbbbb", mec="black",
                       label="a seeded baseline (enqueued trial)"),
                Line2D([], [], ls="", marker="o", ms=4, color="#bbbbbb",
                       label="a drawn child (full length)")]
    ax.legend(handles=handles, fontsize=7.5, loc="best")
    ax.set_xlabel("minutes of search (daemon run time since it started)")
    ax.set_ylabel("validation reward (full-length children)")
    ax.set_title("best so far over the search, at equal wall budget", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    return True


def plot_learned(searches: Sequence[SearchData], path: Path) -> bool:
    """``learned_reward.png``: the controllers that learn (not random search)."""
    from adsearch.errors import ConfigError
    from adsearch.views.learned_plot import plot_learned as draw

    panels = [(f"{s.name} ({s.controller})", s.updates) for s in searches
              if s.controller != "random"]
    for s in searches:
        if s.controller == "random":
            say(f"learned_reward.png: {s.name} left out (random search learns from nothing)")
    try:
        draw(panels, path)
    except ConfigError as exc:
        say(f"missing: {exc}: learned_reward.png skipped")
        return False
    return True


def plot_patterns(searches: Sequence[SearchData], path: Path) -> bool:
    """``patterns.png``: one row per search; per site, :data:`CHANNELS` channels of one
    example drawn at the site's map (one seeded draw of the ops' geometry)."""
    import numpy as np

    from adsearch.views.mask_draw import site_masks

    rows = [s for s in searches if s.patterns]
    if not rows:
        say("missing: no search has a finished trial yet: patterns.png skipped")
        return False
    for s in rows:
        say(f"patterns.png: {s.name}: {s.pattern_source}")
    plt = _pyplot()
    cells: dict[str, list[tuple[int, tuple[int, int] | None]]] = {}
    for s in rows:  # one cell per (site, map): a site acting on 2 maps gets 2
        cells[s.name] = []
        for i in range(len(s.patterns)):
            known = s.maps[i] if i < len(s.maps) else []
            cells[s.name] += [(i, hw) for hw in known] if known else [(i, None)]
    cols = max(len(c) for c in cells.values())
    wide = 4.5 if all(s.seq_shape for s in rows) else 3.0  # a (T, D) mosaic is 4x wider
    tall = 3.2 if wide > 3.0 else 4.3
    fig, axes = plt.subplots(len(rows), cols, figsize=(wide * cols, tall * len(rows)),
                             squeeze=False)
    for r, s in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(cells[s.name]):
                ax.set_visible(False)
                continue
            site, side = cells[s.name][c]
            hw = side or s.seq_shape or (32, 32)
            masks = site_masks(s.patterns[site], CHANNELS, hw, seed=site)
            g = max(1, hw[0] // 16)  # grey lines between the channels of a 2x2 mosaic
            m = [masks[k].astype(float) for k in range(CHANNELS)]
            vgap = np.full((hw[0], g), 0.5)
            top, bottom = np.hstack([m[0], vgap, m[1]]), np.hstack([m[2], vgap, m[3]])
            mosaic = np.vstack([top, np.full((g, top.shape[1]), 0.5), bottom])
            ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            words = _words(site, s.patterns[site], [hw] if side else []).split(": ", 1)[1]
            drop = 1.0 - float(masks.mean())
            n_maps = len(s.maps[site]) if site < len(s.maps) else 0
            at = (f"{hw[0]}x{hw[1]} px" + (f" (1 of its {n_maps} maps)" if n_maps > 1 else "")
                  if side else f"{hw[0]} steps x {hw[1]} channels" if s.seq_shape
                  else "32x32 px (no map recorded)")
            what = (f"the units of {CHANNELS} sequences" if s.seq_shape and not side
                    else f"{CHANNELS} channels")
            ax.set_title(f"site {site} at {at}\n{drop:.0%} of {what} dropped\n"
                         f"{_wrap(words, 44)}", fontsize=7)
            if c == 0:
                ax.set_ylabel(f"{s.name}\n({s.controller})", fontsize=8)
    if all(s.seq_shape for s in rows):
        head = (f"best pattern of each search: {CHANNELS} sequences per site\n(time steps "
                "down, channels across; the site's strongest sub-layer; black: dropped)")
    else:
        head = (f"best pattern of each search: {CHANNELS} channels of one example per site, "
                "at each map the site acts on, as recorded (black: dropped)")
    fig.suptitle(head, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return True


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


# ---------------------------------------------------------------------------- calibration
def calibrate_line(path: Path) -> dict[str, Any] | None:
    """Print ``adsearch calibrate``'s Spearman per epoch and recommended rungs."""
    from adsearch.calibrate.analysis import load_calibration
    from adsearch.errors import ConfigError

    if not path.is_file():
        say(f"missing: {path} (adsearch calibrate has not written it yet)")
        return None
    try:
        doc = load_calibration(path)
    except ConfigError as exc:
        say(f"missing: {exc}")
        return None
    per = ", ".join(f"{r['epoch']:g} {_rho(r['spearman'])}" for r in doc.get("epochs", []))
    rungs = ", ".join(f"{e:g}" for e in doc["recommended_rungs"]) or "none"
    full = (f"the best validated point of {doc['full_epochs']:g} epochs (keep_best)"
            if (doc.get("task_config") or {}).get("keep_best") else
            f"epoch {doc['full_epochs']:g}")
    say(f"calibrate ({path.name}, {doc.get('n_final')} references, {doc['metric']}): Spearman "
        f"per epoch vs {full}: {per}")
    say(f"calibrate: recommended rungs: {rungs}; {doc.get('recommendation', '')}")
    return doc


def _rho(v: float | None) -> str:
    return "-" if v is None else f"{v:+.2f}"


def regime_calibration(rows: Sequence[dict[str, Any]], full_epochs: float, keep_best: bool,
                       threshold: float | None = None, metric: str = "val_metric",
                       ) -> dict[str, Any]:
    """Spearman per epoch from the regime scan's curves: per seed, across its regularizers,
    against the full budget's value (:func:`adsearch.calibrate.analysis.agreement_table`, as
    ``adsearch calibrate`` computes it: with ``keep_best``, the best validated point's value,
    what such a child reports), then the median over seeds. The recommended rungs apply
    :func:`~adsearch.calibrate.analysis.recommend` to the medians."""
    from adsearch.calibrate import analysis as A

    thr = A.THRESHOLD if threshold is None else threshold
    seeds = sorted({int(r["seed"]) for r in rows})
    labels = sorted({str(r["regularizer"]) for r in rows})
    tables = {}
    for s in seeds:
        mine = sorted((r for r in rows if int(r["seed"]) == s), key=lambda r: r["regularizer"])
        tables[s] = A.agreement_table([r.get("curve") or [] for r in mine], full_epochs,
                                      metric, thr, keep_best,
                                      [A.best_epoch_of({"metrics": r}) for r in mine])
    epochs: list[dict[str, Any]] = []
    agree: list[A.EpochAgreement] = []
    for k, e in enumerate(A.rung_epochs(full_epochs)):
        per = {s: tables[s][k] for s in seeds}
        vals = [a.spearman for a in per.values() if a.spearman is not None]
        med = statistics.median(vals) if vals else None
        n = min((a.n for a in per.values()), default=0)
        ok = med is not None and n >= A.MIN_REFERENCES and med >= thr - 1e-12
        agree.append(A.EpochAgreement(e, n, med, None, ok))
        epochs.append({"epoch": e, "median_spearman": med,
                       "per_seed": {str(s): a.spearman for s, a in per.items()},
                       "n_references": {str(s): a.n for s, a in per.items()}})
    rungs = A.recommend(agree)
    n_final = min((sum(A.final_value(r.get("curve") or [], full_epochs, metric, keep_best,
                                     A.best_epoch_of({"metrics": r})) is not None
                       for r in rows if int(r["seed"]) == s) for s in seeds), default=0)
    return {"kind": "proof4-regime-calibration", "metric": metric,
            "full_epochs": float(full_epochs), "keep_best": keep_best, "threshold": thr,
            "seeds": seeds,
            "references": labels,
            "method": ("per seed: Spearman of the references' validation value at each epoch "
                       "against their full-budget value (with keep_best: the best validated "
                       "point's; adsearch.calibrate.analysis.agreement_table); then the "
                       "median over seeds"),
            "epochs": epochs, "recommended_rungs": rungs,
            "recommendation": A.recommendation_text(rungs, full_epochs, thr, n_final)}


def regime_cross_check(regime: Path, regime_summary: Path, out: Path) -> dict[str, Any] | None:
    if not regime.is_file():
        say(f"missing: {regime} (the regime scan): calibrate_regime.json skipped")
        return None
    rows = json.loads(regime.read_text(encoding="utf-8"))
    rows = rows["rows"] if isinstance(rows, dict) else rows
    # the searched protocol only: the rows file also holds the LM and translation scans
    rows = [r for r in rows if r.get("protocol") in (None, SEARCHED_PROTOCOL)]
    if not rows:
        say(f"missing: no {SEARCHED_PROTOCOL} rows in {regime}: calibrate_regime.json skipped")
        return None
    full = max((float(p["epoch"]) for r in rows for p in r.get("curve") or []
                if p.get("epoch") is not None), default=0.0)
    protocols = sorted({str(r.get("protocol")) for r in rows})
    keep_best = False  # the scan's child config (regime_summary.json), as calibrate reads it
    if regime_summary.is_file():
        for s in json.loads(regime_summary.read_text(encoding="utf-8")):
            cfg = s.get("config") or {}
            if s.get("protocol") in protocols and cfg.get("epochs"):
                full, keep_best = float(cfg["epochs"]), bool(cfg.get("keep_best"))
    doc = regime_calibration(rows, full, keep_best)
    doc["source"] = str(regime)
    doc["protocols"] = protocols
    from adsearch.atomic import write_text_atomic

    write_text_atomic(out / "calibrate_regime.json", json.dumps(doc, indent=1) + "\n")
    per = ", ".join(f"{e['epoch']:g} {_rho(e['median_spearman'])}" for e in doc["epochs"])
    vs = (f"the best validated point of {full:g} epochs (keep_best)" if keep_best
          else f"epoch {full:g}")
    say(f"regime scan cross-check ({', '.join(protocols)}; {len(doc['references'])} "
        f"regularizers x {len(doc['seeds'])} seeds): median Spearman per epoch vs {vs}: {per}")
    say(f"regime scan cross-check: recommended rungs: "
        f"{', '.join(f'{e:g}' for e in doc['recommended_rungs']) or 'none'}; "
        f"{doc['recommendation']}")
    return doc


# ---------------------------------------------------------------------------- claims
def _claim(claim: str, target: str, measured: Any = None, ci: list[float] | None = None,
           met: bool | None = None, note: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"claim": claim, "target": target, "measured": measured, "ci": ci,
                           "met": met}
    if note is not None:
        out["note"] = note
    out.update(extra)
    return out


def _scale(metric: str) -> tuple[float, str]:
    """Accuracy differences in points (x100); any other metric on its own scale."""
    return (POINTS, "points") if metric.endswith("_acc") else (1.0, metric)


def regime_claims(path: Path) -> list[dict[str, Any]]:
    """One claim per protocol of the regime scan that measured its test gap."""
    if not path.is_file():
        say(f"missing: {path}: the regime claim is left unmeasured")
        return [_claim(CLAIM_REGIME.format(protocol="CIFAR"),
                       f"at least +{REGIME_TARGET:g} points of test accuracy, 95% CI "
                       "excluding 0, >= 5 paired seeds", note=f"{path.name} missing")]
    out = []
    for s in json.loads(path.read_text(encoding="utf-8")):
        gap = s.get("test_gap")
        if not gap:
            say(f"regime {s.get('protocol')}: no rows in {path.name} (not run): no claim")
            continue
        if not str(s.get("protocol", "")).startswith("C"):  # LM: lm_regime_claim; translation
            continue
        out.append(_claim(
            CLAIM_REGIME.format(protocol=f"CIFAR {s.get('protocol')}"),
            f"at least +{REGIME_TARGET:g} points of test accuracy, 95% CI excluding 0, >= 5 "
            "paired seeds",
            round(gap["mean"] * POINTS, 3),
            [round(gap["lo"] * POINTS, 3), round(gap["hi"] * POINTS, 3)], s.get("met"),
            f"{s.get('pick')} (picked on validation) minus early-stopped none, test accuracy "
            f"points over {gap['n']} paired seeds", unit="points", source=path.name))
    return out


def lm_regime_claim(path: Path) -> dict[str, Any]:
    """The LM regime claim from the scan's LM protocols (names starting with ``L``): the one
    that met the criterion, else the one with the largest measured gap (the lowest mean
    relative test-perplexity difference of its pick against none), every probed protocol
    listed in the note. Values in % (negative: the pick has lower perplexity than none)."""
    target = TARGETS[CLAIM_LM_REGIME]
    rows = ([s for s in json.loads(path.read_text(encoding="utf-8"))
             if str(s.get("protocol", "")).startswith("L") and s.get("test_gap")]
            if path.is_file() else [])
    if not rows:
        return _claim(CLAIM_LM_REGIME, target, note=LEAD_NOTE)

    def pct(v: float) -> float:
        return round(v * POINTS, 2)

    def line(s: dict[str, Any]) -> str:
        g = s["test_gap"]
        ci = (f" [{pct(g['lo']):+.2f}, {pct(g['hi']):+.2f}]" if g["n"] >= 2
              and math.isfinite(g["lo"]) else "")
        return (f"{s['protocol']}: {s['pick']} (picked on validation) {pct(g['mean']):+.2f}%"
                f"{ci} test perplexity vs early-stopped none over {g['n']} seed(s)")

    met = [s for s in rows if s.get("met")]
    best = met[0] if met else min(rows, key=lambda s: s["test_gap"]["mean"])
    g = best["test_gap"]
    ok = g["n"] >= 2 and math.isfinite(g["lo"])
    why = ("met" if met else "no LM protocol met it; the largest measured gap is "
           f"{best['protocol']}'s")
    return _claim(CLAIM_LM_REGIME, target, pct(g["mean"]),
                  [pct(g["lo"]), pct(g["hi"])] if ok else None, bool(met),
                  f"{why}. " + "; ".join(line(s) for s in rows), unit="% test perplexity",
                  source=path.name)


def transfer_claim(regime_summary: Path, transfer: Path) -> dict[str, Any]:
    """The transfer claim from ``transfer.json`` (benchmarks/proof4_transfer.py: the LM
    export against the tuned Dropout of a translation protocol's scan, paired test BLEU
    points) when it holds a summary; else, when the regime scan probed translation protocols
    (names starting with ``T``), a note of why it has not run: each probe's validation gap
    of its best rate over none. The lead's note stays when neither exists."""
    target = TARGETS[CLAIM_TRANSFER]
    doc = json.loads(transfer.read_text(encoding="utf-8")) if transfer.is_file() else {}
    s = doc.get("summary") or {}
    pick = s.get("tuned_dropout")
    d = (s.get(f"vs {pick}") or {}).get("test_bleu") if pick else None
    if d and d.get("n"):
        ok = d["n"] >= 2 and math.isfinite(d["lo"])
        v = (s.get(f"vs {pick}") or {}).get("val_bleu") or {}
        n_none = (s.get("vs none") or {}).get("test_bleu") or {}
        scan = s.get("scan_val_gap") or {}
        note = (f"{s['protocol']}: LM export ({s.get('pattern_file')}, unchanged) minus "
                f"{pick} (tuned on validation by the scan; its validation gain over none "
                f"{scan.get('mean', math.nan):+.2f} BLEU over {scan.get('n', 0)} seeds, "
                f"criterion met: {s.get('scan_met')}), test BLEU points over {d['n']} paired "
                f"seeds; validation {v.get('mean', math.nan):+.2f}; against none, test "
                f"{n_none.get('mean', math.nan):+.2f}; met: mean >= 0 over >= 5 seeds (the CI "
                "need not exclude 0: the target is 'at least', not 'better than')")
        return _claim(CLAIM_TRANSFER, target, round(d["mean"], 3),
                      [round(d["lo"], 3), round(d["hi"], 3)] if ok else None,
                      bool(s.get("met")) and bool(s.get("scan_met")), note,
                      unit="BLEU points", source=transfer.name)
    rows = ([r for r in json.loads(regime_summary.read_text(encoding="utf-8"))
             if str(r.get("protocol", "")).startswith("T") and r.get("val_gap")]
            if regime_summary.is_file() else [])
    if not rows:
        return _claim(CLAIM_TRANSFER, target, note=LEAD_NOTE)

    def line(r: dict[str, Any]) -> str:
        g = r["val_gap"]
        ci = (f" [{g['lo']:+.2f}, {g['hi']:+.2f}]" if g["n"] >= 2 and math.isfinite(g["lo"])
              else "")
        return (f"{r['protocol']}: {r['pick']} {g['mean']:+.2f}{ci} validation BLEU vs none "
                f"over {g['n']} seed(s){' (met)' if r.get('met') else ''}")

    met = [r["protocol"] for r in rows if r.get("met")]
    why = (f"not run yet: {', '.join(met)} met the premise (run benchmarks/proof4_transfer.py)"
           if met else "not run: no translation protocol has shown tuned Dropout above none "
           "on validation BLEU over 5 seeds (the transfer target's premise)")
    return _claim(CLAIM_TRANSFER, target, note=f"{why}. Probed: "
                  + "; ".join(line(r) for r in rows), unit="BLEU points",
                  source=regime_summary.name)


def searched_rows(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Search name -> the verify row of its best pattern: ``pattern 1`` is the verified
    search's (its export), ``NAME best`` a ``--compare`` search's."""
    out = {}
    for r in doc.get("regularizers") or []:
        if r.get("role") == "pattern" and r.get("label") == "pattern 1":
            out[str(doc["search"])] = r
        elif r.get("role") == "compared":
            out[str(r["label"]).removesuffix(" best")] = r
    return out


def _diff(d: dict[str, Any] | None, scale: float) -> dict[str, Any] | None:
    if not d or not d.get("n"):
        return None
    ok = d["n"] >= 2 and math.isfinite(d["lo"])
    return {"mean": round(d["mean"] * scale, 4),
            "ci": [round(d["lo"] * scale, 4), round(d["hi"] * scale, 4)] if ok else None,
            "n": d["n"], "significant": bool(d.get("significant"))}


def _rel(a: dict[Any, Any], b: dict[Any, Any]) -> dict[str, Any] | None:
    """Paired relative difference ``a / b - 1`` in %, over the seeds both have, with its 95%
    t interval (the LM claims: negative is lower perplexity than ``b``)."""
    from adsearch.verify.stats import paired_diff

    x = {int(k): float(v) for k, v in a.items()}
    y = {int(k): float(v) for k, v in b.items()}
    seeds = sorted(set(x) & set(y))
    rel = {k: x[k] / y[k] - 1.0 for k in seeds if y[k]}
    return _diff(paired_diff(rel, dict.fromkeys(rel, 0.0)).to_dict(), POINTS)


def search_claims(reports: Sequence[tuple[str, dict[str, Any]]], task: str,
                  n_searches: int, lm: bool = False) -> list[dict[str, Any]]:
    """The claims a verify report answers, from the reports of ``task``: the best searched
    pattern (picked on validation mean) against the best tuned baseline of its report, and
    a table of the searches with paired CIs. ``lm``: the reports whose metric is lower-is-
    better (test perplexity), every difference the paired relative one in % (the LM target
    is relative); else higher is better, differences absolute (accuracy in points)."""
    from adsearch.verify.stats import paired_diff

    best_claim, wins_claim = (CLAIM_LM, CLAIM_WINS_LM) if lm else (CLAIM_CIFAR, CLAIM_WINS)
    mine = [(p, d) for p, d in reports
            if d.get("task") == task and bool(d.get("lower_is_better")) == lm]
    if not mine:
        why = ("verify not run yet" if not reports else
               f"no verify report of task {task} among {', '.join(p for p, _ in reports)}")
        return [_claim(best_claim, TARGETS[best_claim], note=why),
                _claim(wins_claim, TARGETS[wins_claim], note=why)]
    table = []
    for p, d in mine:
        scale, unit = _scale(d["metric"])
        rows = {str(r.get("label")): r for r in d.get("regularizers") or []}
        none = next((r for r in rows.values() if r.get("role") == "none"), None)
        base = rows.get(str(d.get("best_baseline")))
        for name, r in searched_rows(d).items():
            if not r.get("test") or not r.get("val"):
                continue
            by_seed = r.get("test_by_seed") or {}
            if lm:
                vs_none = _rel(by_seed, none["test_by_seed"]) if none else None
                vs_base = _rel(by_seed, base["test_by_seed"]) if base else None
            else:
                vs_none = _diff(r.get("vs_none"), scale)
                vs_base = _diff(r.get("vs_best_baseline"), scale)
            table.append({"search": name, "report": p, "metric": d["metric"], "unit": unit,
                          "val_mean": r["val"]["mean"],
                          "test_mean": round(r["test"]["mean"] * scale, 4),
                          "n": r["test"]["n"], "best_baseline": d.get("best_baseline"),
                          "vs_none": vs_none, "vs_best_baseline": vs_base,
                          **({"diff_unit": "% (paired relative)"} if lm else {}),
                          "_by_seed": by_seed, "_scale": scale})
    if not table:
        why = "the verify report(s) have no test value of a searched pattern yet"
        return [_claim(best_claim, TARGETS[best_claim], note=why),
                _claim(wins_claim, TARGETS[wins_claim], note=why)]
    pick = max(table, key=lambda t: t["val_mean"])  # on validation, never on test
    vb = pick["vs_best_baseline"]
    if vb is None:
        best = _claim(best_claim, TARGETS[best_claim],
                      note=f"{pick['search']}'s best has no paired value against the best "
                           "baseline in its report")
    elif lm:
        met = vb["ci"] is not None and vb["mean"] <= LM_TARGET and vb["ci"][1] < 0
        best = _claim(
            best_claim, TARGETS[best_claim], vb["mean"], vb["ci"], met,
            f"{pick['search']}'s best (the searched pattern with the best validation mean, "
            f"{pick['val_mean']:.4f}) against {pick['best_baseline']} (best tuned baseline "
            f"on validation): test perplexity, paired relative difference (searched / "
            f"baseline - 1) in % over {vb['n']} paired seeds; met: mean <= {LM_TARGET:g}% "
            "and the 95% CI below 0", unit="% test perplexity", source=pick["report"])
    else:
        met = vb["ci"] is not None and vb["mean"] >= CIFAR_TARGET and vb["ci"][0] > 0
        best = _claim(
            best_claim, TARGETS[best_claim], vb["mean"], vb["ci"], met,
            f"{pick['search']}'s best (the searched pattern with the best validation mean, "
            f"{pick['val_mean']:.4f}) minus {pick['best_baseline']} (best tuned baseline on "
            f"validation), test {pick['metric']} ({pick['unit']}) over {vb['n']} paired "
            "seeds; met: mean >= +0.5 and the 95% CI excludes 0",
            unit=pick["unit"], source=pick["report"])
    ranked = sorted(table, key=lambda t: t["test_mean"] if lm else -t["test_mean"])
    first = ranked[0]
    margin = None
    if len(ranked) > 1:
        second = ranked[1]
        if lm:
            margin = _rel(first["_by_seed"], second["_by_seed"])
        else:
            to_int = {int(k): float(v) for k, v in first["_by_seed"].items()}
            other = {int(k): float(v) for k, v in second["_by_seed"].items()}
            margin = _diff(paired_diff(to_int, other).to_dict(), first["_scale"])
    pairs = pairwise(ranked, lm)
    for t in table:
        t.pop("_by_seed")
        t.pop("_scale")
    complete = len({t["search"] for t in table}) >= n_searches
    unit = "% test perplexity" if lm else first["unit"]
    if margin is None:
        note = f"only {first['search']} verified so far"
        wins = _claim(wins_claim, TARGETS[wins_claim], None, None, None, note, table=ranked)
    else:
        sep = ("its paired 95% CI excludes 0" if margin["significant"] else
               "its paired 95% CI includes 0: not separable from it")
        best_word = "lowest" if lm else "highest"
        note = (f"{best_word} test mean: {first['search']}, {margin['mean']:+.4g} {unit} "
                f"{'relative to' if lm else 'over'} {ranked[1]['search']} (same seeds, "
                f"paired); {sep}; {len(table)} of {n_searches} searches in the table")
        wins = _claim(wins_claim, TARGETS[wins_claim], margin["mean"], margin["ci"],
                      complete, note, unit=unit, winner=first["search"],
                      table=ranked, pairs=pairs)
    return [best, wins]


def pairwise(ranked: Sequence[dict[str, Any]], lm: bool = False) -> list[dict[str, Any]]:
    """Each search against each other on test, paired by seed: ``{"a", "b", "mean", "ci",
    "n", "significant"}`` with ``a`` the one of better test mean (``ranked``'s order), in
    its unit (``lm``: the relative difference ``a / b - 1`` in %). Searches whose best is
    the same pattern pair to exactly 0."""
    from adsearch.verify.stats import paired_diff

    out = []
    for i, a in enumerate(ranked):
        for b in ranked[i + 1:]:
            if lm:
                d = _rel(a["_by_seed"], b["_by_seed"])
            else:
                d = _diff(paired_diff({int(k): float(v) for k, v in a["_by_seed"].items()},
                                      {int(k): float(v) for k, v in b["_by_seed"].items()}
                                      ).to_dict(), a["_scale"])
            out.append({"a": a["search"], "b": b["search"], **(d or {"mean": None, "ci": None,
                                                                    "n": 0})})
    return out


def build_summary(regime_summary: Path, reports: Sequence[tuple[str, dict[str, Any]]],
                  task: str, n_searches: int, old: Sequence[dict[str, Any]],
                  lm_task: str = "wikitext2", n_lm: int = len(ORDER)) -> list[dict[str, Any]]:
    """Every claim of issue 21's table. A claim this run has no numbers for keeps the one an
    earlier ``summary.json`` holds when it has numbers (``measured`` or ``met``: filled in by
    hand, or by a run that had the input this one lacks), or a note someone wrote where this
    script has only :data:`LEAD_NOTE`; claims someone added to that file stay, after these."""
    claims = regime_claims(regime_summary)
    claims.append(lm_regime_claim(regime_summary))
    claims += search_claims(reports, task, n_searches)
    claims += search_claims(reports, lm_task, n_lm, lm=True)
    claims.append(transfer_claim(regime_summary, regime_summary.with_name("transfer.json")))
    before = {c.get("claim"): c for c in old if isinstance(c, dict)}
    out = []
    for c in claims:
        prev = before.get(c["claim"])
        mine_empty = c["measured"] is None and c["met"] is None
        numbers = prev is not None and (prev.get("measured") is not None
                                        or prev.get("met") is not None)
        noted = (prev is not None and c.get("note") == LEAD_NOTE
                 and prev.get("note") not in (None, LEAD_NOTE))
        keep = mine_empty and (numbers or noted)
        out.append(prev if keep and prev is not None else c)
    mine = {c["claim"] for c in claims}
    out += [c for c in old if isinstance(c, dict) and c.get("claim") not in mine]  # added
    return out


def load_reports(paths: Sequence[Path]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for p in paths:
        if not p.is_file():
            say(f"missing: verify report {p} (verify not run yet)")
            continue
        doc = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or "regularizers" not in doc:
            say(f"missing: {p} is not a verify report (no 'regularizers')")
            continue
        out.append((str(p), doc))
    return out


# ---------------------------------------------------------------------------- table
def markdown_table(searches: Sequence[SearchData]) -> str:
    head = ("| search | controller, space | children trained | distinct patterns | "
            "best validation reward | its pattern | wall minutes |")
    lines = [head, "| --- | --- | --- | --- | --- | --- | --- |"]
    for s in searches:
        b = s.best
        if b is None:
            reward = "-"
        elif b["rechecked"]:
            reward = f"{b['mean']:.4f} (re-check mean of {b['n']}; own {b['reward']:.4f})"
        else:
            reward = f"{b['reward']:.4f} (one seed)"
        kids = f"{s.children}" + (f" (+{s.recheck_children} re-check)" if s.recheck_children
                                  else "")
        wall = "-" if s.elapsed_s is None else f"{s.elapsed_s / 60:.1f}"
        words = pattern_words(s) if s.patterns else "-"
        lines.append(f"| {s.name} ({s.state}) | {s.controller}, {s.space} | {kids} | "
                     f"{s.distinct} | {reward} | {words} | {wall} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main
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
