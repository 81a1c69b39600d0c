"""ConvNet dropout patterns of the v2 spaces (``conv2-K``): a rate first, then a kind, then
its structure, with every length relative to the site's feature map.

**ours** (issue 20; the paper's space is :mod:`adsearch.patterns.conv`, unchanged). Fields,
in token order (see :data:`CONV2_VALUES`):

- ``rate``: the fraction of the site's units to drop, from a grid that includes 0 (off).
  Every kind realises this rate in expectation at any map side (see :func:`resolve`).
- ``kind``:

  - ``"element"``: i.i.d. Bernoulli(``rate``) per unit (Dropout); with ``share_c`` one
    ``(H, W)`` mask per example, shared by its channels;
  - ``"channel"``: whole ``(example, channel)`` maps (SpatialDropout);
  - ``"block"``: square blocks at random places (DropBlock): seeds are Bernoulli(gamma)
    where a whole block fits, as in :mod:`adsearch.ops.dropblock`; gamma is solved so that
    the expected dropped fraction, overlaps included, is ``rate``;
  - ``"tile"``: the paper's tiled square, rotated by ``rotate`` degrees and sheared by
    ``shear_x``/``shear_y``, at a uniformly random continuous offset; its period follows
    from the rate (``rate = side**2 / period**2``), so the paper's stride is not a field.

- ``side``: the block or tile side as a fraction of the map side, rounded to whole pixels
  (at least 1). ``"element"`` and ``"channel"`` ignore it.
- ``rotate``, ``shear_x``, ``shear_y``: the tile's transform (``"tile"`` only).
- ``share_c``: one placement per example for all channels (``"element"``, ``"block"``,
  ``"tile"``).
- ``residual``: also drop the residual (shortcut) branch of the site's blocks.

**The cap** (what a pattern may drop at a site): ``rate <= 0.5`` (the grid's top), and a
block or tile side is at most ``map side - 1`` px, so no structure covers the whole map by
construction. A tile also keeps a gap of at least one pattern-frame step between squares
(its side grows if needed), so a row of pixels cannot skip a gap; then a tile never drops a
whole ``(H, W)`` map. Where the cap leaves no room for a block or tile (a 1 px map, or a
tile whose smallest gap-keeping side exceeds ``map side - 1``), the site falls back to
``"element"`` at the same rate. :func:`resolve` is the one place that applies these rules;
``adsearch pattern show --json`` reports its result per site.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

from adsearch.errors import PatternError
from adsearch.patterns.conv import _check_value, _from_mapping

#: The rate grid shared by both v2 families (0 = off).
RATES: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
#: The most a v2 pattern may drop at a site (the cap; see the module docstring).
RATE_CAP = 0.5

CONV2_KINDS: tuple[str, ...] = ("element", "channel", "block", "tile")

#: The discrete choices of every field, in token order. Sides are fractions of the map side;
#: 3/32, 3/16, 3/8 and 3/4 give a 3 px block at 32, 16, 8 and 4 px maps (DropBlock b3), and
#: 1/8, 1/4, 1/2 a 7 px one at 56, 28, 14 px (the paper's b7 on ResNet-50).
CONV2_VALUES: dict[str, tuple[Any, ...]] = {
    "rate": RATES,
    "kind": CONV2_KINDS,
    "side": (0.0625, 0.09375, 0.125, 0.1875, 0.25, 0.375, 0.5, 0.75),
    "rotate": (0, 15, 30, 45),
    "shear_x": (0.0, 0.25, 0.5),
    "shear_y": (0.0, 0.25, 0.5),
    "share_c": (False, True),
    "residual": (False, True),
}

CONV2_FIELDS: tuple[str, ...] = tuple(CONV2_VALUES)


@dataclass(frozen=True)
class ConvPattern2:
    """One v2 pattern for one ConvNet site. See the module docstring for semantics."""

    rate: float = 0.1
    kind: str = "element"
    side: float = 0.1875
    rotate: int = 0
    shear_x: float = 0.0
    shear_y: float = 0.0
    share_c: bool = False
    residual: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("rate", "side", "shear_x", "shear_y") and type(v) is int:
                object.__setattr__(self, f.name, float(v))
            _check_value("ConvPattern2", f.name, getattr(self, f.name), CONV2_VALUES[f.name])

    @property
    def off(self) -> bool:
        """Rate 0: no dropout at this site (the v2 spaces' off choice)."""
        return self.rate == 0.0

    def drop_fraction(self, height: int | None = None, width: int | None = None) -> float:
        """Expected dropped fraction: ``rate`` at every map side (see :func:`resolve`)."""
        return self.rate

    def canonical(self) -> ConvPattern2:
        """This pattern with the fields its kind ignores at their defaults (rate 0: all of
        them), so patterns that act alike store alike (adsearch.patterns.canonical)."""
        if self.off:
            return ConvPattern2(rate=0.0)
        keep: dict[str, Any] = {"rate": self.rate, "kind": self.kind, "residual": self.residual}
        if self.kind in ("element", "block", "tile"):
            keep["share_c"] = self.share_c
        if self.kind in ("block", "tile"):
            keep["side"] = self.side
        if self.kind == "tile":
            keep.update(rotate=self.rotate, shear_x=self.shear_x, shear_y=self.shear_y)
        return ConvPattern2(**keep)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ConvPattern2:
        return cls(**_from_mapping("ConvPattern2", CONV2_VALUES, _no_off(data, "ConvPattern2")))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _no_off(data: Any, cls_name: str) -> Any:
    """v2 patterns have no ``off`` field (rate 0 is off); say so instead of a key error."""
    if isinstance(data, dict) and "off" in data:
        raise PatternError(f"{cls_name}: no field 'off' in a v2 pattern; rate 0 is off")
    return data


class ConvGeometry(NamedTuple):
    """What a :class:`ConvPattern2` does at one map side: the effective ``kind`` (after the
    cap's fallback), the block/tile ``side`` in px, the tile ``period`` in px (continuous),
    the block seed probability ``gamma``, and the 2x2 pattern-frame transform ``matrix``."""

    kind: str
    side: int
    period: float
    gamma: float
    matrix: tuple[tuple[float, float], tuple[float, float]]


def side_px(fraction: float, map_side: int) -> int:
    """A side given as a fraction of the map, in whole pixels: ``round(fraction * map_side)``
    (halves up), at least 1 and at most ``map_side - 1`` (the cap)."""
    return max(1, min(map_side - 1, math.floor(fraction * map_side + 0.5)))


def tile_matrix(rotate: int, shear_x: float, shear_y: float) -> tuple[tuple[float, float], ...]:
    """The pattern-frame transform ``Hy^-1 Hx^-1 R^-1`` of :mod:`adsearch.ops.conv` (det 1)."""
    t = math.radians(rotate)
    c, s = math.cos(t), math.sin(t)
    r = ((c, -s), (s, c))
    hx = ((1.0, -shear_x), (0.0, 1.0))
    hy = ((1.0, 0.0), (-shear_y, 1.0))

    def mul(a: Any, b: Any) -> tuple[tuple[float, float], ...]:
        return tuple(
            tuple(sum(a[i][k] * b[k][j] for k in range(2)) for j in range(2)) for i in range(2)
        )

    return mul(hy, mul(hx, r))


def block_coverage(gamma: float, height: int, width: int, block: int) -> float:
    """Expected dropped fraction of DropBlock's valid-region seeding with seed probability
    ``gamma``: pixel ``(i, j)`` is covered by ``n_h(i) * n_w(j)`` possible seeds."""

    def counts(n: int) -> list[int]:
        valid = n - block + 1
        return [min(i, valid - 1) - max(0, i - block + 1) + 1 for i in range(n)]

    ch, cw = counts(height), counts(width)
    q = 1.0 - gamma
    return sum(1.0 - q ** (a * b) for a in ch for b in cw) / (height * width)


@functools.lru_cache(maxsize=4096)
def block_gamma(rate: float, height: int, width: int, block: int) -> float:
    """The seed probability whose expected coverage is ``rate`` (bisection to 1e-12)."""
    lo, hi = 0.0, 1.0
    if block_coverage(hi, height, width, block) < rate:
        return 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if block_coverage(mid, height, width, block) < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@functools.lru_cache(maxsize=4096)
def resolve(pattern: ConvPattern2, height: int, width: int) -> ConvGeometry:
    """Apply the cap and the relative geometry at an ``(height, width)`` map (see the
    module docstring). Pure Python; the ops and ``pattern show`` both use it."""
    ident = ((1.0, 0.0), (0.0, 1.0))
    element = ConvGeometry("element", 1, 1.0, pattern.rate, ident)
    if pattern.kind in ("element", "channel") or pattern.rate == 0.0:
        return element._replace(kind=pattern.kind)
    small = min(height, width)
    if small < 2:
        return element
    side = side_px(pattern.side, small)
    if pattern.kind == "block":
        gamma = block_gamma(pattern.rate, height, width, side)
        return ConvGeometry("block", side, float(side), gamma, ident)
    m = tile_matrix(pattern.rotate, pattern.shear_x, pattern.shear_y)
    step = max(abs(v) for row in m for v in row)  # the largest move of q per pixel step
    root = math.sqrt(pattern.rate)
    need = math.ceil(step * root / (1.0 - root) - 1e-9)  # side whose gap is >= one step
    side = max(side, need)
    if side > small - 1:
        return element
    return ConvGeometry("tile", side, side / root, 0.0, (m[0], m[1]))
