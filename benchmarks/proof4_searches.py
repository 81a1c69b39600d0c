"""Proof round 4 report, the searches: each search read once, read-only, from its run
directory (as ``adsearch status`` reads it), and the markdown table of them.

Part of benchmarks/proof4_report.py (which says what the report holds); the figures are
:mod:`proof4_plots`, the claims :mod:`proof4_claims`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

#: The searches of proof4_search.sh, in the order the tables list them (others follow).
ORDER = ("tpe", "reinforce", "random", "v1")
PREFIX = "p4-cifar-"
#: The LM searches (proof4_search.sh lm-*): ``p4-lm-tpe`` etc., exported as ``lm-tpe.json``;
#: their figures carry this suffix (``searches_lm.png``), their claims are the LM ones.
LM_PREFIX = "p4-lm-"
LM_SUFFIX = "_lm"
#: Fields a pattern's words always name (v2: rate and kind; v1: size, stride and repeat).
ALWAYS_SHOWN = ("rate", "kind", "size", "stride", "repeat")


def say(line: str) -> None:
    print(line, flush=True)


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

