"""Which map each site's pattern is drawn at, and where that map comes from (issue 20).

A v1 conv pattern with a finite ``repeat``, and every v2 block or tile (whose side is a
fraction of the map side), drops a share that depends on the map it acts on. ``adsearch
show``, ``pattern show`` and ``export`` draw and report each site at the map recorded for
its search, and fall back to the space's defaults (the built-in network at its standard
input, :data:`~adsearch.patterns.SITE_MAP_SIDES`) only when nothing was recorded. Where the
maps are recorded:

- a built-in or plug-in task that states them (``site_maps(config)``): the daemon stores
  them when the search starts, in the data of its ``dedup.start`` event;
- a script search (or a plug-in whose child returns them): the child's result metrics
  ``site_maps``, one ``[H, W]`` per site (``adsearch.sites.attach`` reports them through
  :meth:`adsearch.trial.Trial.record_sites`);
- a pattern file: ``provenance.site_maps`` (``export`` writes it; ``pattern baseline
  --sides`` too).

Pure data and the store's read API: no torch, no numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from adsearch.errors import PatternError
from adsearch.patterns.space import SITE_MAP_SIDES, SearchSpace

#: The result metric a script child's reported maps are stored under.
SITE_MAPS_METRIC = "site_maps"
#: The daemon's event whose ``data["maps"]`` holds the task's maps (adsearch/daemon/dedup.py).
TASK_MAPS_EVENT = "dedup.start"
#: Input side of the built-in network of each space with defaults (``--input-size``).
BUILTIN_INPUT_SIDE: dict[str, int] = {"conv-3": 32, "conv-4": 224}

Map = tuple[int, int]


@dataclass(frozen=True)
class SiteSides:
    """Per site the map ``(H, W)`` (conv, px) or ``(T, D)`` (seq) its pattern is drawn at, or
    None (no map known: the caller's own default); ``source`` says in words where they come
    from; ``recorded`` is False for the space's defaults and for nothing at all."""

    maps: tuple[Map | None, ...]
    source: str
    recorded: bool

    def at(self, site: int) -> Map | None:
        return self.maps[site] if 0 <= site < len(self.maps) else None

    def to_dict(self) -> dict[str, Any]:
        return {"maps": [None if m is None else list(m) for m in self.maps],
                "source": self.source, "recorded": self.recorded}


def _one_map(entry: Any) -> Map | None:
    """``[H, W]``, or a list of such (a site's maps, largest first: the first), else None."""
    if isinstance(entry, (list, tuple)) and entry and isinstance(entry[0], (list, tuple)):
        entry = entry[0]
    if (isinstance(entry, (list, tuple)) and len(entry) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in entry)):
        h, w = int(entry[0]), int(entry[1])
        if h >= 1 and w >= 1:
            return h, w
    return None


def normalise(maps: Any, num_sites: int) -> tuple[Map, ...] | None:
    """Recorded maps as one ``(H, W)`` per site, or None unless every site has one."""
    if not isinstance(maps, (list, tuple)) or len(maps) != num_sites:
        return None
    out = [_one_map(m) for m in maps]
    if any(m is None for m in out):
        return None
    return tuple(m for m in out if m is not None)


def default_sides(space: SearchSpace) -> SiteSides:
    """The space's defaults: the built-in network's maps (``conv-3``/``conv2-3``: 32, 16, 8;
    ``conv-4``: 56, 28, 14, 7), else nothing."""
    sides = SITE_MAP_SIDES.get(f"{space.kind}-{space.num_sites}")
    if space.kind == "conv" and sides is not None and len(sides) == space.num_sites:
        return SiteSides(tuple((n, n) for n in sides), "the space's defaults (the built-in "
                         f"network of {space.kind}-{space.num_sites} at its standard input): "
                         "no map was recorded", False)
    return SiteSides((None,) * space.num_sites, "no map was recorded and the space has no "
                     "defaults", False)


def recorded(maps: Any, space: SearchSpace, source: str) -> SiteSides | None:
    """``maps`` (per site ``[H, W]`` or a list of them) as recorded sides, or None when
    they do not give every site a map."""
    got = normalise(maps, space.num_sites)
    return None if got is None else SiteSides(got, source, True)


def search_sides(store: Any, search_id: int, space: SearchSpace,
                 result: Any = None) -> SiteSides:
    """The maps of a search's sites: the trial's own reported maps (``result``, its stored
    result or None), else the task's maps stored at the search's start, else those another
    trial's script reported, else the space's defaults."""
    metrics = getattr(result, "metrics", None) or {}
    own = recorded(metrics.get(SITE_MAPS_METRIC), space,
                   f"reported by trial {getattr(result, 'trial_id', '?')}'s own child "
                   "(adsearch.sites.attach)")
    if own is not None:
        return own
    for ev in reversed(store.events(search_id, limit=20, kinds=[TASK_MAPS_EVENT])):
        task = recorded((ev.data or {}).get("maps"), space,
                        "the task's site maps, stored when the search started")
        if task is not None:
            return task
    for r in store.results(search_id):
        other = recorded((r.metrics or {}).get(SITE_MAPS_METRIC), space,
                         f"reported by trial {r.trial_id}'s child (adsearch.sites.attach)")
        if other is not None:
            return other
    return default_sides(space)


def provenance_sides(site_maps: Any, space: SearchSpace) -> SiteSides | None:
    """The sides a pattern file's ``provenance.site_maps`` records, or None."""
    if not isinstance(site_maps, dict):
        return None
    return recorded(site_maps.get("maps"), space,
                    f"the file's provenance: {site_maps.get('source') or 'recorded'}")


def parse_sides(text: str, space: SearchSpace, opt: str = "--sides") -> SiteSides:
    """``"32,16,8"``: one side per site (square maps), for a file that carries none."""
    try:
        vals = [int(v) for v in str(text).split(",")]
    except ValueError:
        raise PatternError(f"{opt} {text!r}: expected integers separated by commas, one per "
                           "site, e.g. 32,16,8") from None
    if len(vals) != space.num_sites or any(not 1 <= v <= 1024 for v in vals):
        raise PatternError(f"{opt} {text!r}: space {space.name} has {space.num_sites} site(s); "
                           f"give {space.num_sites} side(s) in 1..1024 px, e.g. "
                           f"{','.join(str(max(1, 32 >> i)) for i in range(space.num_sites))}")
    return SiteSides(tuple((v, v) for v in vals), f"{opt} {text}", True)


def input_size_sides(size: int, space: SearchSpace) -> SiteSides:
    """The maps of the space's built-in network at a ``size`` px input (each stage's side
    is the input's divided by its stride, rounded up as a padded conv does)."""
    key = f"{space.kind}-{space.num_sites}"
    base, sides = BUILTIN_INPUT_SIDE.get(key), SITE_MAP_SIDES.get(key)
    if base is None or sides is None:
        raise PatternError(f"--input-size: space {space.name} has no built-in network whose "
                           "strides are known; give each site's side with --sides, e.g. "
                           f"--sides {','.join(str(max(1, 32 >> i)) for i in range(space.num_sites))}")
    if not 1 <= size <= 4096:
        raise PatternError(f"--input-size {size}: expected a side in 1..4096 px")
    maps = tuple((math.ceil(size * s / base),) * 2 for s in sides)
    return SiteSides(tuple((int(h), int(w)) for h, w in maps),
                     f"--input-size {size} (the built-in network of {key})", True)


def as_provenance(sides: SiteSides) -> dict[str, Any] | None:
    """``provenance.site_maps`` of a pattern file: the recorded maps and their source."""
    if not sides.recorded:
        return None
    return {"maps": [list(m) if m is not None else None for m in sides.maps],
            "source": sides.source}


__all__ = ["SITE_MAPS_METRIC", "SiteSides", "TASK_MAPS_EVENT", "as_provenance",
           "default_sides", "input_size_sides", "normalise", "parse_sides", "provenance_sides",
           "recorded", "search_sides"]
