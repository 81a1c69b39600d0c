"""The readable view of ``adsearch show NAME TRIAL``: state, result, the pattern drawn, the
learning curve and the logs. No torch: each site is drawn as one period tile of its pattern
(``█`` dropped, ``·`` kept) from the pattern's geometry; ``adsearch export`` then
``adsearch pattern show FILE`` draws the real masks (rotation and shear included).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from adsearch.errors import AdsearchError
from adsearch.patterns import SITE_MAP_SIDES
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


def _site_text(i: int, p: dict[str, Any], space: Any) -> str:
    """The site's fields and its expected drop fraction; a finite-repeat conv pattern's
    depends on the map, taken at the site's real size in the space's built-in network."""
    fields = ", ".join(f"{k}={v}" for k, v in p.items())
    sides = SITE_MAP_SIDES.get(f"{space.kind}-{space.num_sites}")
    try:
        pat = space.pattern_cls.from_dict(p)
        if space.kind == "seq" or p.get("repeat") is None:
            drop = f"drops {pat.drop_fraction():.1%} of units"
        elif sides is not None and i < len(sides):
            drop = f"drops {pat.drop_fraction(sides[i], sides[i]):.1%} of a {sides[i]}x{sides[i]} map"
        else:
            drop = "finite repeat: its share depends on the map; see `pattern show`"
    except AdsearchError:  # a stored pattern this adsearch cannot read: show it as stored
        drop = "not readable by this adsearch"
    return f"site {i}: {fields}  ({drop})"


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
        if r["metrics"]:
            head.append("metrics: " + ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["metrics"].items()))
    if t.get("error"):
        head.append(f"last error: {t['error']}")
    parts: list[Any] = [Text("\n".join(head))]
    for i, p in enumerate(t["pattern"]):
        parts.append(Text(_site_text(i, p, space)))
        parts.append(Text("\n".join("  " + row for row in tile_art(p)), style="bold"))
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
