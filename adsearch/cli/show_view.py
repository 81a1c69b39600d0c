"""The readable view of ``adsearch show NAME TRIAL``: state, result, the pattern drawn, the
learning curve and the logs. No torch: each conv site is drawn as one channel of its mask at
the site's map (the one recorded for the search, else the space's defaults: the view says
which, see :mod:`adsearch.patterns.mapsides`), with numpy like ``adsearch pattern show``
(the same seeded draw as ``pattern show`` of the exported file); a v1 seq site as one
period of its time pattern (``█`` dropped, ``·`` kept).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from adsearch.errors import AdsearchError
from adsearch.patterns import ConvPattern, SeqPattern, decode_pattern
from adsearch.patterns.mapsides import SITE_MAPS_METRIC, SiteSides, default_sides
from adsearch.views.status import sparkline

#: Lines of the newest attempt's log printed under the view.
LOG_TAIL = 10


def tile_art(p: dict[str, Any]) -> list[str]:
    """One period of a pattern as text rows: a ``size x size`` dropped square in a
    ``period x period`` tile (conv), or ``size`` dropped steps in a period of time steps (seq)."""
    size, period = int(p["size"]), int(p["size"]) + int(p["stride"])
    if "repeat" in p:  # conv
        return ["".join("█" if r < size and c < size else "·" for c in range(period))
                for r in range(period)]
    return ["".join("█" if t < size else "·" for t in range(period))]


def _sides_of(doc: dict[str, Any], space: Any) -> SiteSides:
    """The maps ``show`` resolved (``doc["site_maps"]``), else the space's defaults."""
    got = doc.get("site_maps")
    if isinstance(got, dict) and isinstance(got.get("maps"), list):
        maps = tuple((int(m[0]), int(m[1])) if isinstance(m, list) and len(m) == 2 else None
                     for m in got["maps"])
        return SiteSides(maps, str(got.get("source", "")), bool(got.get("recorded")))
    return default_sides(space)


def _site_parts(i: int, p: dict[str, Any], space: Any, sides: SiteSides) -> list[Any]:
    """The site's fields and its expected drop at its map, then its drawing: one channel of
    its mask at the map (conv), or one period of a v1 seq pattern."""
    from adsearch.cli.pattern_cmd import _block_art, _dropped, _site_masks, expected_drop

    fields = ", ".join(f"{k}={v}" for k, v in p.items())
    try:
        pat = decode_pattern(p, space)
    except AdsearchError:  # a stored pattern this adsearch cannot read: show it as stored
        return [Text(f"site {i}: {fields}  (not readable by this adsearch)")]
    if space.kind == "seq":
        parts: list[Any] = [Text(f"site {i}: {fields}  (drops {pat.drop_fraction():.1%} of units)")]
        if isinstance(pat, SeqPattern) and not pat.off:
            parts.append(Text("\n".join("  " + row for row in tile_art(p)), style="bold"))
        return parts
    hw = sides.at(i)
    if hw is None:
        if isinstance(pat, ConvPattern) and pat.repeat is not None and not pat.off:
            return [Text(f"site {i}: {fields}  (finite repeat: its share depends on the map, "
                         "and none is known; see `pattern show FILE --sides`)")]
        return [Text(f"site {i}: {fields}  (drops {pat.drop_fraction():.1%} of units)")]
    masks = _site_masks(pat, hw, i, "conv")[:1]
    h, w = hw
    text = (f"site {i} ({h}x{w} map): {fields}  (drops {expected_drop(pat, hw):.1%} of a "
            f"{h}x{w} map in expectation; the channel drawn: {_dropped(masks):.1%})")
    return [Text(text), _block_art(masks, 0, "conv")]


def render_trial(doc: dict[str, Any], space: Any) -> Any:
    """A Rich renderable of ``show``'s document (the same dict ``--json`` prints)."""
    t, r = doc["trial"], doc["result"]
    head = [f"trial {t['id']} of {doc['search']}  [{t['state']}]  attempts {t['attempts']}, "
            f"controller v{t['controller_version']}, seed {t['seed']}"]
    if r is not None:
        reward = "none" if r["reward"] is None else f"{r['reward']:.4f}"
        m = r.get("metrics") or {}
        if m.get("truncated"):  # a rung value, not a full-budget result
            reward += (f" (truncated: stopped at epoch {m.get('truncated_at_epoch', 0):.4g}, "
                       "a rung value, not a full-budget result)")
        head.append(f"reward {reward} in {r['seconds']:.1f} s")
        learned = r.get("learned_reward")
        head.append("learned reward " + ("none (no controller update has used it)"
                                         if learned is None else f"{learned:.4f}")
                    + " (what the controller learned from: adsearch.reward)")
        if r.get("cache_of") is not None:
            head.append(f"cache hit: the stored result of trial {r['cache_of']} (no child)")
        shown = {k: v for k, v in (r["metrics"] or {}).items() if k != SITE_MAPS_METRIC}
        if shown:  # the reported site maps are in the site lines
            head.append("metrics: " + ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()))
    if t.get("error"):
        head.append(f"last error: {t['error']}")
    sides = _sides_of(doc, space)
    if space.kind == "conv":
        known = [m for m in sides.maps if m is not None]
        head.append("site maps: " + (", ".join(f"{h}x{w}" for h, w in known) + f" ({sides.source})"
                                     if known else sides.source))
    parts: list[Any] = [Text("\n".join(head))]
    for i, p in enumerate(t["pattern"]):
        parts.extend(_site_parts(i, p, space, sides))
    curve = (r or {}).get("curve") or []
    if curve:
        keys = list(dict.fromkeys(k for point in curve for k in point))
        table = Table(title=f"curve ({len(curve)} points)", title_justify="left")
        for k in keys:
            table.add_column(k, justify="right")
        for point in curve:
            table.add_row(*(f"{point[k]:.4g}" if isinstance(point.get(k), float) else str(point.get(k, ""))
                            for k in keys))
        parts.append(table)
        last = keys[-1]
        values = [float(pt[last]) for pt in curve if isinstance(pt.get(last), (int, float))]
        if values:
            parts.append(Text(f"{last}  {sparkline(values)}"))
    logs = doc["logs"]
    none = "none" if doc.get("run_dir") else ("none known: no run directory (read from the "
                                              "store alone), so no local logs")
    parts.append(Text("logs: " + (", ".join(logs) if logs else none)))
    if logs:
        try:
            tail = Path(logs[-1]).read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_TAIL:]
        except OSError:
            tail = []
        if tail:
            parts.append(Text(f"last {len(tail)} line(s) of {Path(logs[-1]).name}:\n" + "\n".join(tail),
                              style="dim"))
    return Group(*parts)
